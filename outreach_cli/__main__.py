from outreach_cli.cli.app import main

main()
