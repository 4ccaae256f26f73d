from outreach_cli.cli.app import main

if __name__ == "__main__":  # a worker process of a big import imports this module again
    main()
