"""The proposal's TestJobQueue (tests/infrastructure/test_jobs.py), as written.

Adapted only in imports: ``zephyr.jobs`` is ``zephyr_celery`` here. The
``redis_client`` fixture (conftest.py) starts an in-process worker on the broker.
"""

from zephyr_celery import job


class TestJobQueue:
    async def test_job_execution(self, redis_client):
        @job
        async def test_job(data: str):
            return f"processed_{data}"

        job_id = await test_job.delay("test_data")
        result = await job_id.wait()

        assert result == "processed_test_data"

    async def test_job_retry(self, redis_client):
        attempt_count = 0

        @job(retry=3)
        async def failing_job():
            nonlocal attempt_count
            attempt_count += 1
            if attempt_count < 3:
                raise Exception("Temporary failure")
            return "success"

        job_id = await failing_job.delay()
        result = await job_id.wait()

        assert result == "success"
        assert attempt_count == 3
