"""A small real DNS server (UDP, dnspython's wire format) whose records a test changes."""

from __future__ import annotations

import socket
import threading

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset


class DnsServer:
    """Answers A/AAAA queries from ``records`` ({name: [addresses]}) on 127.0.0.1."""

    def __init__(self) -> None:
        self.records: dict[str, list[str]] = {}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.queries = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            query = dns.message.from_wire(data)
            response = dns.message.make_response(query)
            question = query.question[0]
            name = question.name.to_text().rstrip(".")
            self.queries += 1
            if name not in self.records:
                response.set_rcode(dns.rcode.NXDOMAIN)
            else:
                want = dns.rdatatype.to_text(question.rdtype)
                addresses = [a for a in self.records[name] if (":" in a) == (want == "AAAA")]
                if addresses:
                    response.answer.append(
                        dns.rrset.from_text_list(question.name, 5, "IN", want, addresses)
                    )
            self.sock.sendto(response.to_wire(), peer)

    def close(self) -> None:
        self.sock.close()
