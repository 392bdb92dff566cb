from upnode._cli import main

main()
