package school

import (
	"context"
	"testing"

	"github.com/morango-sync/morango/profile"
	"github.com/morango-sync/morango/store"
)

// Generated data serializes without a single refused row: every partition
// renders and every summary log has its namespaced id.
func TestGeneratedDataSerializes(t *testing.T) {
	ctx := context.Background()
	db := newDB(t)
	var path string
	if err := db.QueryRow(`SELECT file FROM pragma_database_list WHERE name = 'main'`).Scan(&path); err != nil {
		t.Fatal(err)
	}
	sum, err := Generate(ctx, db, "1e2edbeb2ffea72cd7eb943a956a992c", Options{Seed: 1, Records: 3000})
	if err != nil {
		t.Fatal(err)
	}
	p, err := profile.Parse(ProfileJSON())
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.Init(ctx, path, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, err := s.Serialize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r.Failed != 0 || r.Created != int64(sum.Rows) {
		t.Fatalf("serialized %+v, want %d created and none failed", r, sum.Rows)
	}
}
