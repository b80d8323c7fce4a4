from refsuite.cli import main

raise SystemExit(main())
