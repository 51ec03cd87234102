// Package certs implements the original Morango's certificates: RSA keys,
// scope definitions, filters and scopes, certificates, chains and their
// verification, and offline requests and grants. Everything here is pure: no
// storage, no network, no printing.
//
// # Model
//
// A scope definition (profile.json) is a template of partition prefixes:
// Kolibri's "full-facility" gives read and write access to ${dataset_id};
// "single-user" gives read access to ${dataset_id}:user-rw:${user_id},
// ${dataset_id}:allusers-ro and ${dataset_id}:user-ro:${user_id}, and write
// access to ${dataset_id}:user-rw:${user_id} and ${dataset_id}:anonymous. A
// certificate names a definition and its parameters; NewScope substitutes
// them into a Scope of two Filters, read and write. A partition is in a
// filter if it starts with one of its prefixes.
//
// Anyone can make a root certificate (NewRoot): its primary parameter is its
// own id, and every prefix of its scope must start with that id, so a root
// only ever speaks for its own namespace. Which roots to trust is up to the
// application. A root's holder grants narrower certificates down a chain:
// each child is signed by its parent's key, has its parent's profile and a
// scope within its parent's.
//
// # Wire forms, compatible with the original
//
//   - Public key string: base64 of the PKCS#1 RSAPublicKey DER on one line
//     (PublicKeyString); parsing accepts the PEM and SubjectPublicKeyInfo
//     forms too (ParsePublicKey).
//   - Signature: RSASSA-PKCS1-v1_5 with SHA-256 over the message's bytes,
//     standard base64 on one line (Sign, Verify).
//   - Certificate id: sha2_uuid("<public key string>:<profile>[:<salt>]")
//     (Certificate.ComputeID).
//   - Serialized text, the signed bytes: Python's json.dumps of id,
//     parent_id, profile, salt, scope_definition_id, scope_version,
//     scope_params (a JSON string) and public_key_string
//     (Certificate.Serialize). A certificate received keeps its text; it is
//     never re-serialized for verification.
//   - Chain: a JSON list, root first, of {"id", "serialized", "signature"}
//     (Link, ParseChain).
//
// # Requests and grants
//
// A device that wants a certificate makes a key and a Request (NewRequest),
// keeps the private key and carries the request file to a device holding a
// parent certificate with its private key. That device checks the file
// (ParseRequest) and grants it (Certificate.Grant), which refuses a scope
// wider than the parent's with ErrScopeNotSubset; the chain of the new
// certificate (Chain) travels back, and the requester verifies it
// (VerifyChain) and joins it with its private key.
//
// # Verification
//
// VerifyChain applies the original's rules (Certificate.Check) to every link
// of a chain, root first, and reports each kind of failure as its own error
// (ErrIDInvalid, ErrSignatureInvalid, ErrRootScopeInvalid,
// ErrScopeNotSubset, ErrProfileInvalid, ErrChainBroken,
// ErrUnknownScopeDefinition, ErrMalformed). Unlike the original it never
// skips the links a device already knows: a verified chain says that every
// link is well made, not that the root is trusted; the caller checks that.
//
// # Worked example
//
// A facility device makes a root and grants a tablet a single-user
// certificate:
//
//	defs := certs.DefinitionList{fullFacility, singleUser}
//	root, _ := certs.NewRoot(fullFacility, nil) // facility device
//	req, key, _ := certs.NewRequest(singleUser,
//		map[string]string{"dataset_id": root.ID, "user_id": userID}, "facilitydata") // tablet
//	data, _ := json.Marshal(req) // the request file, carried to the facility device
//	req, _ = certs.ParseRequest(data)
//	child, _ := root.Grant(req, defs)
//	chain := certs.Chain([]*certs.Certificate{root, child}) // carried back to the tablet
//	verified, _ := certs.VerifyChain(chain, defs)
//	verified[1].PrivateKey = key
//	scope, _ := verified[1].Scope(defs)
//	// scope.Read:  [D:user-rw:U D:allusers-ro D:user-ro:U]
//	// scope.Write: [D:user-rw:U D:anonymous]
//
// where D is the root's id and U the user's. Example in the tests runs it.
//
// # Deviations from the original
//
// Scope parameter values must be JSON strings (the original would use
// Python's str() of any value). Keys of 2048 to 4096 bits are accepted (the
// original parses only 2048-bit keys). Chains, requests, serialized texts,
// keys and signatures are size-bounded, and duplicate JSON members are
// refused. Scope parameters written here put the definition's primary key
// first and the others in sorted order (ParamsJSON); parameters received are
// kept verbatim in whatever order they came.
package certs
