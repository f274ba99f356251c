from mmsae.cli.main import main

raise SystemExit(main())
