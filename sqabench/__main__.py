from sqabench.cli import main

main()
