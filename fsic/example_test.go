package fsic_test

import (
	"encoding/json"
	"fmt"

	"github.com/morango-sync/morango/fsic"
)

// The worked example of the package documentation: device X sends to
// device Z what Z lacks under user U's partition, and Z records what it
// then holds.
func Example() {
	filter := []string{"D:user-rw:U"}
	x := fsic.Calculate([]fsic.MaxCounter{
		{Instance: "x", Partition: "", Counter: 7},
		{Instance: "y", Partition: "D:user-rw:U", Counter: 4},
	}, filter, nil)
	zRows := []fsic.MaxCounter{{Instance: "x", Partition: "D", Counter: 3}}
	z := fsic.Calculate(zRows, filter, nil)
	show("X", x)
	show("Z", z)

	diff := fsic.Diff(fsic.Expand(x, filter), fsic.Expand(z, filter))
	show("Z lacks", diff)
	for _, s := range fsic.Selectors(diff) {
		fmt.Printf("send records under %s with a version by %s after %d\n", s.Partition, s.Instance, s.After)
	}

	// Once Z has absorbed every record sent:
	for _, r := range fsic.MaxMerge(zRows, fsic.Claims(x, filter)) {
		fmt.Printf("Z holds %s up to %d under %q\n", r.Instance, r.Counter, r.Partition)
	}
	// Output:
	// X {"super":{"":{"x":7}},"sub":{"D:user-rw:U":{"y":4}}}
	// Z {"super":{"D":{"x":3}},"sub":{}}
	// Z lacks {"D:user-rw:U":{"x":3,"y":0}}
	// send records under D:user-rw:U with a version by x after 3
	// send records under D:user-rw:U with a version by y after 0
	// Z holds x up to 3 under "D"
	// Z holds x up to 7 under "D:user-rw:U"
	// Z holds y up to 4 under "D:user-rw:U"
}

func show(what string, v any) {
	b, _ := json.Marshal(v)
	fmt.Println(what, string(b))
}

// Reading an FSIC from a file: parse, then check it against the filter it
// claims to be for.
func ExampleValidate() {
	v, err := fsic.Parse([]byte(`{"super": {}, "sub": {"D:user-rw:V": {"b7f53d94e01652740f3900e7890a45bf": 3}}}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(fsic.Validate(v, []string{"D:user-rw:U"}))
	// Output:
	// fsic sub partition "D:user-rw:V": partition outside the filter
}
