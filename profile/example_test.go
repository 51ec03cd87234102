package profile_test

import (
	"fmt"
	"log"

	"github.com/morango-sync/morango/profile"
)

func Example() {
	p, err := profile.Parse([]byte(`{
	  "profile": "facilitydata",
	  "models": [
	    {"name": "facilityuser", "table": "facilityuser",
	     "partition": "${dataset_id}:user-ro:${id}", "exclude": ["ui_theme"]},
	    {"name": "contentsummarylog", "table": "contentsummarylog",
	     "partition": "${dataset_id}:user-rw:${user_id}",
	     "source_id": "${user_id}:${content_id}",
	     "foreign_keys": {"user_id": "facilityuser"},
	     "merge": {"prefer": "max", "column": "modified"}}
	  ]
	}`))
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range p.Ordered() {
		fmt.Println("write", m.Name)
	}

	// A summary log: its id follows from its partition and source id, so
	// two devices recording the same learner and content get one row.
	row := map[string]string{
		"dataset_id": "1e2edbeb2ffea72cd7eb943a956a992c",
		"user_id":    "62af002a58548dbc3613504793660dac",
		"content_id": "cccccccccccccccccccccccccccccccc",
	}
	get := func(column string) (string, bool) { v, ok := row[column]; return v, ok }
	logs := p.Model("contentsummarylog")
	id, err := logs.ComputeID(get)
	if err != nil {
		log.Fatal(err)
	}
	who, err := logs.Identify(id, get)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("id", who.ID)
	fmt.Println("partition", who.Partition)

	// A profile with a mistake names the field at fault.
	_, err = profile.Parse([]byte(`{"profile": "facilitydata", "models": [
	  {"name": "membership", "table": "membership", "partition": "${dataset_id}:user-ro:${user_id}",
	   "foreign_keys": {"user_id": "users"}}]}`))
	fmt.Println(err)
	// Output:
	// write facilityuser
	// write contentsummarylog
	// id 156a5141357c305dabc7a61e167464f0
	// partition 1e2edbeb2ffea72cd7eb943a956a992c:user-rw:62af002a58548dbc3613504793660dac
	// models[0] (membership).foreign_keys.user_id: unknown model "users"
}
