package cli

import (
	"github.com/urfave/cli/v2"
)

// bashCompletion completes morango's commands and flags through the
// app's --generate-bash-completion.
const bashCompletion = `# bash completion for morango; load with: source <(morango completion bash)
_morango_complete() {
	local cur opts
	COMPREPLY=()
	cur="${COMP_WORDS[COMP_CWORD]}"
	if [[ "$cur" == "-"* ]]; then
		opts=$("${COMP_WORDS[@]:0:$COMP_CWORD}" "$cur" --generate-bash-completion 2>/dev/null)
	else
		opts=$("${COMP_WORDS[@]:0:$COMP_CWORD}" --generate-bash-completion 2>/dev/null)
	fi
	COMPREPLY=($(compgen -W "${opts}" -- "${cur}"))
	return 0
}
complete -o bashdefault -o default -F _morango_complete morango
`

// zshCompletion wraps the bash completion for zsh.
const zshCompletion = `# zsh completion for morango; load with: source <(morango completion zsh)
autoload -U +X bashcompinit && bashcompinit
` + bashCompletion

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script",
		ArgsUsage: "bash|zsh",
		Description: `Completes commands, subcommands and flags.

Example:
   source <(morango completion bash)`,
		Action: func(c *cli.Context) error {
			switch c.Args().First() {
			case "bash", "":
				printf(c, "%s", bashCompletion)
			case "zsh":
				printf(c, "%s", zshCompletion)
			default:
				return usagef("completion: bash or zsh, not %q", c.Args().First())
			}
			return nil
		},
	}
}
