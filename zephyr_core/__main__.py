from zephyr_core.cli import main

main()
