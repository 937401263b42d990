from vault.quickcli import main

main()
