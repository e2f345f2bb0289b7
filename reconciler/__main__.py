from reconciler.cli.root import main

main()
