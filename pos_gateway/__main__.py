from pos_gateway.cli import main

raise SystemExit(main())
