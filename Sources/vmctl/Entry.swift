import VMCtlCommands

/// The executable is only this: every command lives in VMCtlCommands.
@main
enum Entry {
    static func main() async {
        await VMCtl.main()
    }
}
