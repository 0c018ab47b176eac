from terminal_sim.cli import main

raise SystemExit(main())
