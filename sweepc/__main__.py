from sweepc.cli import main

raise SystemExit(main())
