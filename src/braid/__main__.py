from braid.control.cli import main

raise SystemExit(main())
