package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/morango-sync/morango/bundle"
	"github.com/morango-sync/morango/certs"
	"github.com/morango-sync/morango/profile"
	"github.com/morango-sync/morango/store"
)

var paramFlag = &cli.StringSliceFlag{Name: "param", Usage: "a scope parameter `KEY=VALUE` (repeat for more)"}

func parseParams(list []string) (map[string]string, error) {
	m := map[string]string{}
	for _, kv := range list {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usagef("--param %q: want KEY=VALUE", kv)
		}
		m[k] = v
	}
	return m, nil
}

func scopeDefinition(p *profile.Profile, id string) (certs.ScopeDefinition, error) {
	def, ok := p.ScopeDefinition(id)
	if !ok {
		var names []string
		for _, d := range p.ScopeDefinitions {
			names = append(names, d.ID)
		}
		return def, usagef("no scope definition %q in profile %s (it has: %s)", id, p.Name, strings.Join(names, ", "))
	}
	return def, nil
}

// writeFileAtomic writes data to path atomically.
// maxCertFile bounds what is read of a chain or request file: the
// largest either may be is a chain's 1 MiB (certs.ParseChain), and a file
// from a stick may be any size.
const maxCertFile = 1<<20 + 1

// readCertFile reads a chain or request file, at most maxCertFile bytes of
// it: a larger file is refused by the parser for its size without being
// read whole into memory.
func readCertFile(path string) ([]byte, error) {
	f, err := bundle.OSFS{}.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxCertFile))
}

// checkOutput refuses, before a command does any work, an output file that
// must not be replaced: a database or its log, or a file of another kind
// than the command writes (a chain not yet imported, for a bundle).
func checkOutput(c *cli.Context, want bundle.FileKind) error {
	if err := bundle.MayReplaceWith(bundle.OSFS{}, c.String("output"), want); err != nil {
		return &exitError{code: ExitUsage, err: err}
	}
	return nil
}

// checkRequestOutput refuses to write a request over another device's
// request (two tablets told to write stick/tablet.request): that request
// would be lost before it was granted, and the chain granted for the
// second would reach the first. This device's own earlier request may be
// replaced.
func checkRequestOutput(c *cli.Context, db *store.DB) error {
	path := c.String("output")
	data, err := readCertFile(path)
	if err != nil {
		return nil // nothing there, or the write reports it
	}
	req, err := certs.ParseRequest(data)
	if err != nil {
		return nil
	}
	if key, err := db.RequestKey(c.Context, req.PublicKey); err != nil || key != "" {
		return err
	}
	return &exitError{code: ExitUsage, err: fmt.Errorf("%s holds another device's request (%s %s), which may not be granted yet", path, req.ScopeDefinitionID, req.ScopeParams),
		hint: "write this one to another file (for example one named after the device), or remove that one once it is granted"}
}

// checkChainOutput refuses to write a chain over another chain: the device
// it was granted to may not have imported it yet.
func checkChainOutput(c *cli.Context) error {
	path := c.String("output")
	data, err := readCertFile(path)
	if err != nil {
		return nil
	}
	links, err := certs.ParseChain(data)
	if err != nil || len(links) == 0 {
		return nil
	}
	return &exitError{code: ExitUsage, err: fmt.Errorf("%s holds the chain of certificate %s, which its device may not have imported yet", path, links[len(links)-1].ID),
		hint: "write this one to another file (for example one named after the device), or remove that one once it is imported"}
}

func writeFileAtomic(path string, data []byte) error {
	return bundle.WriteFile(bundle.OSFS{}, path, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

func certCommand() *cli.Command {
	return &cli.Command{
		Name:  "cert",
		Usage: "make, request, grant, import and inspect certificates",
		Description: `Certificates grant scoped read and write rights down a chain from a root. All of it
works offline: requests and granted chains travel as files.`,
		Subcommands: []*cli.Command{
			certRootCommand(), certRequestCommand(), certGrantCommand(), certImportCommand(),
			certListCommand(), certShowCommand(), certVerifyCommand(),
		},
	}
}

func certRootCommand() *cli.Command {
	return &cli.Command{
		Name:  "root",
		Usage: "make a new root certificate (for example, a new facility)",
		Description: `The root's id becomes its primary scope parameter (for full-facility, the
dataset id): the app's data for that root lives under partitions that start with it.

A device that already holds a certificate of its own (a root, or one granted to it) is
refused unless --another is given: a second root starts another facility, whose data
the first one's devices never see. A device joins an existing facility with 'cert request'.

Example:
   morango cert root --db facility.sqlite3 --scope full-facility`,
		Flags: []cli.Flag{dbFlag, &cli.StringFlag{Name: "scope", Usage: "the scope definition `ID`", Required: true}, paramFlag, jsonFlag,
			&cli.BoolFlag{Name: "another", Usage: "make a root even though this device holds a certificate already"}},
		Action: func(c *cli.Context) error {
			db, err := openDB(c)
			if err != nil {
				return err
			}
			defer db.Close()
			def, err := scopeDefinition(db.Profile(), c.String("scope"))
			if err != nil {
				return err
			}
			params, err := parseParams(c.StringSlice("param"))
			if err != nil {
				return err
			}
			if !c.Bool("another") {
				held, err := db.Certificates(c.Context)
				if err != nil {
					return err
				}
				for _, h := range held {
					if h.PrivateKey != "" {
						return &exitError{code: ExitFailure,
							err:  fmt.Errorf("this device already holds certificate %s (%s %s): a new root would start another facility", h.Link.ID, h.Scope, h.Params),
							hint: "to join a facility, run 'morango cert request' and have it granted; to start another one on this device, add --another"}
					}
				}
			}
			root, err := certs.NewRoot(def, params)
			if err != nil {
				return err
			}
			if err := db.SaveCertificate(c.Context, root, certs.PrivateKeyString(root.PrivateKey), true); err != nil {
				return err
			}
			return printCert(c, root.ID, root.ScopeDefinitionID, root.ScopeParams)
		},
	}
}

func printCert(c *cli.Context, id, scope, params string) error {
	if c.Bool("json") {
		return printJSON(out(c), map[string]string{"id": id, "scope": scope, "params": params})
	}
	printf(c, "%s  %s %s\n", id, scope, params)
	return nil
}

func certRequestCommand() *cli.Command {
	return &cli.Command{
		Name:  "request",
		Usage: "make a key pair and a request file for a certificate",
		Description: `The private key stays in this database. Carry the request file to a device that
holds a parent certificate, which grants it with 'morango cert grant'.

Example:
   morango cert request --db tablet.sqlite3 --scope single-user --param dataset_id=D --param user_id=U -o /media/usb/tablet.request`,
		Flags: []cli.Flag{dbFlag, &cli.StringFlag{Name: "scope", Usage: "the scope definition `ID`", Required: true}, paramFlag,
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "the request `FILE` to write", Required: true}},
		Action: func(c *cli.Context) error {
			if err := checkOutput(c, bundle.KindJSON); err != nil {
				return err
			}
			db, err := openDB(c)
			if err != nil {
				return err
			}
			defer db.Close()
			if err := checkRequestOutput(c, db); err != nil {
				return err
			}
			def, err := scopeDefinition(db.Profile(), c.String("scope"))
			if err != nil {
				return err
			}
			params, err := parseParams(c.StringSlice("param"))
			if err != nil {
				return err
			}
			req, key, err := certs.NewRequest(def, params, db.Profile().Name)
			if err != nil {
				return &exitError{code: ExitFailure, err: err, hint: "give each parameter the scope takes once, as --param KEY=VALUE"}
			}
			data, err := json.MarshalIndent(req, "", "  ")
			if err != nil {
				return err
			}
			if err := db.SaveRequest(c.Context, req.PublicKey, def.ID, req.ScopeParams, certs.PrivateKeyString(key)); err != nil {
				return err
			}
			if err := writeFileAtomic(c.String("output"), append(data, '\n')); err != nil {
				return err
			}
			printf(c, "wrote request %s for scope %s %s\n", c.String("output"), def.ID, req.ScopeParams)
			return nil
		},
	}
}

func certGrantCommand() *cli.Command {
	return &cli.Command{
		Name:      "grant",
		Usage:     "sign a requested certificate with a parent certificate this device holds",
		ArgsUsage: "REQUEST",
		Description: `Refuses a request whose scope is wider than the parent's. Writes the whole chain,
root first, for the requesting device to import.

Example:
   morango cert grant --db facility.sqlite3 --parent 1e2edbeb2ffea72cd7eb943a956a992c /media/usb/tablet.request -o /media/usb/tablet.chain`,
		Flags: []cli.Flag{dbFlag, &cli.StringFlag{Name: "parent", Usage: "the parent certificate `ID`", Required: true},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "the chain `FILE` to write", Required: true}, jsonFlag},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("grant: name one request file")
			}
			if err := checkOutput(c, bundle.KindJSON); err != nil {
				return err
			}
			if err := checkChainOutput(c); err != nil {
				return err
			}
			db, err := openDB(c)
			if err != nil {
				return err
			}
			defer db.Close()
			data, err := readCertFile(c.Args().First())
			if err != nil {
				return err
			}
			req, err := certs.ParseRequest(data)
			if err != nil {
				return fmt.Errorf("request %s: %w", c.Args().First(), err)
			}
			parent, err := loadOwnCertificate(c, db, c.String("parent"))
			if err != nil {
				return err
			}
			child, err := parent.Grant(req, db.Profile())
			if errors.Is(err, certs.ErrScopeNotSubset) {
				return &exitError{code: ExitFailure, err: err,
					hint: fmt.Sprintf("the request asks for %s %s, which certificate %s may not grant: grant it on a device of the facility it names, with a certificate whose scope holds it (see 'morango cert list')",
						req.ScopeDefinitionID, req.ScopeParams, parent.ID)}
			}
			if err != nil {
				return &exitError{code: ExitFailure, err: err, hint: "grant it with a parent certificate of the request's app and scope (see 'morango cert list')"}
			}
			if err := db.SaveCertificate(c.Context, child, "", false); err != nil {
				return err
			}
			chain, err := db.Chain(c.Context, child.ID)
			if err != nil {
				return err
			}
			out, err := json.MarshalIndent(chain, "", "  ")
			if err != nil {
				return err
			}
			if err := writeFileAtomic(c.String("output"), append(out, '\n')); err != nil {
				return err
			}
			if c.Bool("json") {
				return printCert(c, child.ID, child.ScopeDefinitionID, child.ScopeParams)
			}
			printf(c, "granted %s (%s %s); wrote chain %s\n", child.ID, child.ScopeDefinitionID, child.ScopeParams, c.String("output"))
			return nil
		},
	}
}

// loadOwnCertificate returns a stored certificate with its private key.
func loadOwnCertificate(c *cli.Context, db *store.DB, id string) (*certs.Certificate, error) {
	sc, err := db.Certificate(c.Context, id)
	if err != nil {
		return nil, err
	}
	if sc.PrivateKey == "" {
		return nil, &exitError{code: ExitFailure, err: fmt.Errorf("certificate %s: this device does not hold its private key", id),
			hint: "grant with a certificate made on this device (see 'morango cert list')"}
	}
	cert, err := certs.Deserialize(sc.Link.Serialized, sc.Link.Signature)
	if err != nil {
		return nil, err
	}
	if cert.PrivateKey, err = certs.ParsePrivateKey(sc.PrivateKey); err != nil {
		return nil, err
	}
	return cert, nil
}

func certImportCommand() *cli.Command {
	return &cli.Command{
		Name:      "import",
		Usage:     "store a verified certificate chain; its root becomes trusted on this device",
		ArgsUsage: "CHAIN",
		Description: `A chain granted for this device's request is joined with the private key the
request left here.

Example:
   morango cert import --db tablet.sqlite3 /media/usb/tablet.chain`,
		Flags: []cli.Flag{dbFlag, jsonFlag},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("cert import: name one chain file")
			}
			db, err := openDB(c)
			if err != nil {
				return err
			}
			defer db.Close()
			data, err := readCertFile(c.Args().First())
			if err != nil {
				return err
			}
			links, err := certs.ParseChain(data)
			if err != nil {
				if _, rerr := certs.ParseRequest(data); rerr == nil {
					return &exitError{code: ExitFailure, err: fmt.Errorf("%s is a certificate request, not a chain", c.Args().First()),
						hint: "grant it on the device that holds the parent certificate (morango cert grant), then import the chain that writes"}
				}
				return &exitError{code: ExitFailure, err: fmt.Errorf("chain %s: %w", c.Args().First(), err),
					hint: "import the chain file 'morango cert grant' wrote (-o)"}
			}
			verified, err := certs.VerifyChain(links, db.Profile())
			if err != nil {
				return &exitError{code: ExitFailure, err: fmt.Errorf("chain %s: %w", c.Args().First(), err),
					hint: "the chain is not valid for this profile; do not trust it"}
			}
			for i, cert := range verified {
				key, err := db.RequestKey(c.Context, certs.PublicKeyString(cert.PublicKey))
				if err != nil {
					return err
				}
				if err := db.SaveCertificate(c.Context, cert, key, i == 0); err != nil {
					return err
				}
			}
			leaf := verified[len(verified)-1]
			if c.Bool("json") {
				return printCert(c, leaf.ID, leaf.ScopeDefinitionID, leaf.ScopeParams)
			}
			printf(c, "imported %s (%s %s); trusted root %s\n", leaf.ID, leaf.ScopeDefinitionID, leaf.ScopeParams, verified[0].ID)
			if sc, err := db.Certificate(c.Context, leaf.ID); err == nil && sc.PrivateKey == "" {
				printf(c, "  note: it was granted for another device's request, so this device cannot sync with it; if this device asked for one,\n"+
					"        its request file was replaced before it was granted: make a new one ('morango cert request') and have it granted\n")
			}
			return nil
		},
	}
}

func certListCommand() *cli.Command {
	return &cli.Command{
		Name:  "list",
		Usage: "list the certificates this device holds",
		Description: `Example:
   morango cert list --db school.sqlite3`,
		Flags: []cli.Flag{dbFlag, jsonFlag},
		Action: func(c *cli.Context) error {
			db, err := openDB(c)
			if err != nil {
				return err
			}
			defer db.Close()
			list, err := db.Certificates(c.Context)
			if err != nil {
				return err
			}
			type entry struct {
				ID      string `json:"id"`
				Parent  string `json:"parent_id,omitempty"`
				Scope   string `json:"scope"`
				Params  string `json:"params"`
				HasKey  bool   `json:"has_private_key"`
				Trusted bool   `json:"trusted_root"`
			}
			var es []entry
			for _, s := range list {
				es = append(es, entry{s.Link.ID, s.ParentID, s.Scope, s.Params, s.PrivateKey != "", s.Trusted})
			}
			if c.Bool("json") {
				return printJSON(out(c), es)
			}
			for _, e := range es {
				flags := ""
				if e.HasKey {
					flags += " [own key]"
				}
				if e.Trusted {
					flags += " [trusted root]"
				}
				printf(c, "%s  %-14s %s%s\n", e.ID, e.Scope, e.Params, flags)
			}
			return nil
		},
	}
}

func certShowCommand() *cli.Command {
	return &cli.Command{
		Name:      "show",
		Usage:     "show a certificate, its chain and its scope",
		ArgsUsage: "ID",
		Description: `Example:
   morango cert show --db school.sqlite3 1e2edbeb2ffea72cd7eb943a956a992c`,
		Flags: []cli.Flag{dbFlag, jsonFlag},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("cert show: name one certificate id")
			}
			db, err := openDB(c)
			if err != nil {
				return err
			}
			defer db.Close()
			chain, err := db.Chain(c.Context, c.Args().First())
			if err != nil {
				return err
			}
			verified, err := certs.VerifyChain(chain, db.Profile())
			if err != nil {
				return err
			}
			return showChain(c, verified, db.Profile())
		},
	}
}

func showChain(c *cli.Context, verified []*certs.Certificate, p *profile.Profile) error {
	leaf := verified[len(verified)-1]
	scope, err := leaf.Scope(p)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		var ids []string
		for _, v := range verified {
			ids = append(ids, v.ID)
		}
		return printJSON(out(c), map[string]any{"id": leaf.ID, "chain": ids, "scope": leaf.ScopeDefinitionID,
			"params": leaf.ScopeParams, "read": scope.Read, "write": scope.Write})
	}
	for i, v := range verified {
		printf(c, "%s%s  %s %s\n", strings.Repeat("  ", i), v.ID, v.ScopeDefinitionID, v.ScopeParams)
	}
	printf(c, "read:  %s\nwrite: %s\n", strings.Join(scope.Read, " "), strings.Join(scope.Write, " "))
	return nil
}

func certVerifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "verify a certificate chain file, without a database",
		ArgsUsage: "CHAIN",
		Description: `The chain is a JSON list of {"id","serialized","signature"} objects, root first
(the original Morango's format). The scope definitions come from the profile.

Example:
   morango cert verify --profile profile.json /media/usb/tablet.chain`,
		Flags: []cli.Flag{&cli.StringFlag{Name: "profile", Usage: "the profile `FILE` with the scope definitions", Required: true}, jsonFlag},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("cert verify: name one chain file")
			}
			p, err := profile.Load(c.String("profile"))
			if err != nil {
				return err
			}
			data, err := readCertFile(c.Args().First())
			if err != nil {
				return err
			}
			links, err := certs.ParseChain(data)
			if err != nil {
				return fmt.Errorf("chain %s: %w", c.Args().First(), err)
			}
			verified, err := certs.VerifyChain(links, p)
			if err != nil {
				return fmt.Errorf("chain %s is not valid: %w", c.Args().First(), err)
			}
			leaf := verified[len(verified)-1]
			if c.Bool("json") {
				return showChain(c, verified, p)
			}
			printf(c, "valid: %s, root %s, leaf %s (%s %s)\n", count(len(verified), "certificate"), verified[0].ID, leaf.ID, leaf.ScopeDefinitionID, leaf.ScopeParams)
			return nil
		},
	}
}
