from nocry.cli.main import main

raise SystemExit(main())
