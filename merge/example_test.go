package merge_test

import (
	"fmt"

	"github.com/morango-sync/morango/merge"
)

// Two devices edit the same record while apart, then exchange sticks. Each
// merges the other's state; both end with the same head, the losing edit
// kept as a sibling, and the joined history. A later edit on either device
// ends the conflict everywhere it travels.
func Example() {
	created := merge.Edit(nil, merge.Version{Instance: "a", Counter: 1, Serialized: `{"title":"draft"}`})
	onA := merge.Edit(&created, merge.Version{Instance: "a", Counter: 2, Serialized: `{"title":"final"}`})
	onB := merge.Edit(&created, merge.Version{Instance: "b", Counter: 1, Serialized: `{"title":"done"}`})

	atA, _ := merge.Merge(&onA, onB, nil)
	atB, _ := merge.Merge(&onB, onA, nil)
	fmt.Println("A:", atA.Outcome, atA.State)
	fmt.Println("B:", atB.Outcome, atB.State)
	fmt.Println("B must rewrite its app row:", atB.Dirty)

	resolved := merge.Edit(&atB.State, merge.Version{Instance: "b", Counter: 2, Serialized: `{"title":"final, done"}`})
	back, _ := merge.Merge(&atA.State, resolved, nil)
	fmt.Println("A:", back.Outcome, back.State)

	stored := merge.EncodeSiblings(atA.State.Siblings)
	fmt.Print(stored)
	// Output:
	// A: conflict head a:2 {"title":"final"} sibling b:1 {"title":"done"} history a:2 b:1
	// B: conflict head a:2 {"title":"final"} sibling b:1 {"title":"done"} history a:2 b:1
	// B must rewrite its app row: true
	// A: fast-forward head b:2 {"title":"final, done"} history a:2 b:2
	// {"instance":"b","counter":1,"deleted":false,"hard_deleted":false,"serialized":"{\"title\":\"done\"}"}
}

// A profile can make a column decide conflicts: here the greater score wins
// whichever version is newer.
func ExampleColumnRule() {
	created := merge.Edit(nil, merge.Version{Instance: "a", Counter: 1, Serialized: `{"score":0}`})
	onA := merge.Edit(&created, merge.Version{Instance: "a", Counter: 5, Serialized: `{"score":70}`})
	onB := merge.Edit(&created, merge.Version{Instance: "b", Counter: 1, Serialized: `{"score":85}`})

	res, _ := merge.Merge(&onA, onB, merge.ColumnRule("score", true))
	fmt.Println(res.State.Head.Serialized, "wins over", res.State.Siblings[0].Serialized)
	// Output:
	// {"score":85} wins over {"score":70}
}
