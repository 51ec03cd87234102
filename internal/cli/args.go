package cli

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// interspersed moves the flags that follow a command's positional arguments
// in front of them, so that "morango cert grant --parent P REQ -o OUT"
// works as people type it: urfave/cli stops reading flags at the first
// argument. Everything after "--" is left alone.
func interspersed(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	out := []string{args[0]}
	cmds := app.Commands
	var cmd *cli.Command
	i := 1
	// Walk down the command path: global flags, then command names.
	for i < len(args) {
		a := args[i]
		if strings.HasPrefix(a, "-") {
			out = append(out, a)
			i++
			continue
		}
		var next *cli.Command
		for _, c := range cmds {
			if c.HasName(a) {
				next = c
			}
		}
		if next == nil {
			break
		}
		cmd = next
		out = append(out, a)
		i++
		if len(cmd.Subcommands) == 0 {
			break
		}
		cmds = cmd.Subcommands
	}
	if cmd == nil {
		return args
	}
	takesValue := map[string]bool{}
	known := map[string]bool{}
	for _, f := range cmd.Flags {
		_, isBool := f.(*cli.BoolFlag)
		for _, n := range f.Names() {
			known[n] = true
			takesValue[n] = !isBool
		}
	}
	var flags, positional []string
	for i < len(args) {
		a := args[i]
		if a == "--" {
			positional = append(positional, args[i:]...)
			break
		}
		name := strings.TrimLeft(a, "-")
		name, _, hasValue := strings.Cut(name, "=")
		if strings.HasPrefix(a, "-") && known[name] {
			flags = append(flags, a)
			if takesValue[name] && !hasValue && i+1 < len(args) {
				flags = append(flags, args[i+1])
				i++
			}
		} else {
			positional = append(positional, a)
		}
		i++
	}
	return append(append(out, flags...), positional...)
}
