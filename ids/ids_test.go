package ids

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

type uuidFixtures struct {
	SHA2UUID struct {
		Examples []struct {
			Args     []string `json:"args"`
			SHA2UUID string   `json:"sha2_uuid"`
		} `json:"examples"`
	} `json:"sha2_uuid"`
	Namespaced struct {
		Examples []struct {
			Partition string `json:"partition"`
			SourceID  string `json:"source_id"`
			ModelName string `json:"model_name"`
			Want      string `json:"compute_namespaced_id"`
		} `json:"examples"`
	} `json:"compute_namespaced_id"`
	Models struct {
		Examples []struct {
			ModelName    string `json:"model_name"`
			RawPartition string `json:"calculate_partition()"`
			SourceID     string `json:"_morango_source_id"`
			ID           string `json:"id"`
			Partition    string `json:"_morango_partition"`
		} `json:"examples"`
	} `json:"syncable_model_calculate_uuid"`
}

func loadFixtures(t *testing.T) uuidFixtures {
	t.Helper()
	data, err := os.ReadFile("../testdata/morango/uuids.json")
	if err != nil {
		t.Fatal(err)
	}
	var f uuidFixtures
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestSHA2UUIDFixtures(t *testing.T) {
	f := loadFixtures(t)
	if len(f.SHA2UUID.Examples) == 0 {
		t.Fatal("no sha2_uuid examples")
	}
	for _, ex := range f.SHA2UUID.Examples {
		if got := SHA2UUID(ex.Args...); got != ex.SHA2UUID {
			t.Errorf("SHA2UUID(%q) = %s, want %s", ex.Args, got, ex.SHA2UUID)
		}
	}
}

func TestNamespacedFixtures(t *testing.T) {
	f := loadFixtures(t)
	for _, ex := range f.Namespaced.Examples {
		if got := Namespaced(ex.Partition, ex.SourceID, ex.ModelName); got != ex.Want {
			t.Errorf("Namespaced(%q, %q, %q) = %s, want %s", ex.Partition, ex.SourceID, ex.ModelName, got, ex.Want)
		}
	}
	for _, ex := range f.Models.Examples {
		id := Namespaced(ex.RawPartition, ex.SourceID, ex.ModelName)
		if id != ex.ID {
			t.Errorf("%s: id %s, want %s", ex.ModelName, id, ex.ID)
		}
		if p := FinalPartition(ex.RawPartition, id); p != ex.Partition {
			t.Errorf("%s: partition %s, want %s", ex.ModelName, p, ex.Partition)
		}
		if strings.Contains(ex.RawPartition, IDPlaceholder) {
			if raw := RawPartition(ex.Partition, id); raw != ex.RawPartition {
				t.Errorf("%s: raw partition %s, want %s", ex.ModelName, raw, ex.RawPartition)
			}
		}
	}
}

// The vectors of the original's test_consistent_0_5_instance_id and
// test_envvar_overrides.
func TestSaltedHashAndInstanceID(t *testing.T) {
	cases := map[string]string{
		"magicsysid":     "54940f560a55bbf7d86b",
		"a0:aa:aa:aa:aa": "804f4c20d3b2b5a29b95",
		"magicnodeid":    "9ed21d0fb4dacfa4009d",
		"":               "",
	}
	for in, want := range cases {
		if got := SaltedHash(in); got != want {
			t.Errorf("SaltedHash(%q) = %q, want %q", in, got, want)
		}
	}
	db := "7fe445b75cea11858c00fb97bdee8878"
	if got := SHA2UUID(db, SaltedHash("magicsysid"), SaltedHash("a0:aa:aa:aa:aa")); got != "e45c06595d820f4581e0c82930359592" {
		t.Errorf("instance id = %s", got)
	}
	if got := SHA2UUID(db, SaltedHash("magicsysid"), SaltedHash("magicnodeid")); got != "9033c0cec24d8a8d906dcba416f77625" {
		t.Errorf("instance id with node override = %s", got)
	}
}

func TestProquint(t *testing.T) {
	if got := Proquint("e45c06595d820f4581e0c82930359592"); got != "vidis-binin" {
		t.Errorf("Proquint = %q, want vidis-binin", got)
	}
}

func TestRandomAndValid(t *testing.T) {
	a, b := Random(), Random()
	if !Valid(a) || !Valid(b) || a == b {
		t.Fatalf("Random gave %q and %q", a, b)
	}
	for _, bad := range []string{"", "ABCDEF0123456789abcdef0123456789", "0123", "g123456789abcdef0123456789abcdef"} {
		if Valid(bad) {
			t.Errorf("Valid(%q) = true", bad)
		}
	}
}
