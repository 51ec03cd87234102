package certs_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/morango-sync/morango/certs"
)

// A facility device makes a root certificate and grants a tablet a
// single-user certificate, offline; the tablet verifies the chain it gets
// back. The single-user certificate cannot grant anything wider.
func Example() {
	fullFacility := certs.ScopeDefinition{
		ID: "full-facility", Profile: "facilitydata", Version: 1, PrimaryScopeParamKey: "dataset_id",
		ReadWriteFilterTemplate: "${dataset_id}",
	}
	singleUser := certs.ScopeDefinition{
		ID: "single-user", Profile: "facilitydata", Version: 1,
		ReadFilterTemplate:      "${dataset_id}:allusers-ro\n${dataset_id}:user-ro:${user_id}",
		WriteFilterTemplate:     "${dataset_id}:anonymous",
		ReadWriteFilterTemplate: "${dataset_id}:user-rw:${user_id}",
	}
	defs := certs.DefinitionList{fullFacility, singleUser}
	const user = "1b8e5843a583944459e0bcf6a2fe43e2"

	// On the facility device.
	root, err := certs.NewRoot(fullFacility, nil)
	if err != nil {
		panic(err)
	}

	// On the tablet: a key and a request file.
	req, key, err := certs.NewRequest(singleUser, map[string]string{"dataset_id": root.ID, "user_id": user}, "facilitydata")
	if err != nil {
		panic(err)
	}
	file, _ := json.Marshal(req)

	// On the facility device: check the request and grant it.
	req, err = certs.ParseRequest(file)
	if err != nil {
		panic(err)
	}
	child, err := root.Grant(req, defs)
	if err != nil {
		panic(err)
	}
	chainFile, _ := json.Marshal(certs.Chain([]*certs.Certificate{root, child}))

	// Back on the tablet: verify the chain and join it with the key.
	links, err := certs.ParseChain(chainFile)
	if err != nil {
		panic(err)
	}
	verified, err := certs.VerifyChain(links, defs)
	if err != nil {
		panic(err)
	}
	mine := verified[len(verified)-1]
	mine.PrivateKey = key
	scope, err := mine.Scope(defs)
	if err != nil {
		panic(err)
	}
	show := strings.NewReplacer(root.ID, "D", user, "U")
	fmt.Println("verified", len(verified), "certificates, root", show.Replace(verified[0].ID))
	fmt.Println("read: ", show.Replace(strings.Join(scope.Read, " ")))
	fmt.Println("write:", show.Replace(strings.Join(scope.Write, " ")))

	// The tablet cannot grant the whole facility.
	wide := *req
	wide.ScopeDefinitionID, wide.ScopeParams = "full-facility", `{"dataset_id": "`+root.ID+`"}`
	_, err = mine.Grant(&wide, defs)
	fmt.Println("wider grant refused:", errors.Is(err, certs.ErrScopeNotSubset))

	// Output:
	// verified 2 certificates, root D
	// read:  D:user-rw:U D:allusers-ro D:user-ro:U
	// write: D:user-rw:U D:anonymous
	// wider grant refused: true
}
