from sweepc.cli.app import main

raise SystemExit(main())
