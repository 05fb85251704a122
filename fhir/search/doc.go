// Package search holds the FHIR R4 search machinery that does not touch a
// database: the Registry of every official search parameter (built from the
// embedded search-parameters.json and the Patient CompartmentDefinition),
// index extraction (the normalised values a resource is found by, per
// parameter type), and query parsing (prefixes, modifiers, chains, _has,
// _include and the result parameters) into a Query that a store compiles
// to SQL.
//
// # Indexing
//
// Registry.Extract returns an Index for a resource as it is stored (id and
// meta already set, urn:uuid references already rewritten): one slice per
// parameter type, every value tagged with its parameter code (At). A store
// writes these rows in the same transaction as the resource and deletes the
// previous ones. Index.Patients lists the Patient compartments the resource
// belongs to, for compartment search and Patient/$everything.
//
// # Matching a Query
//
// Query.Clauses are ANDed; the Values of a clause are ORed. A clause on
// parameter P matches a resource when some index row of P matches some
// value, where (t is the index row, v the Value):
//
//	string     t.Norm starts with v.Text; :contains t.Norm contains v.Text;
//	           :exact t.Exact = v.Raw
//	token      t.Code != "" and (v.AnySystem or t.System = v.System) and
//	           (v.Code = "" or t.Code = v.Code) (rows with an empty Code only
//	           carry text); :text t.Text starts with v.Text; :not no
//	           row matches (resources without P match); :of-type
//	           t.TypeSystem = v.TypeSystem, t.TypeCode = v.TypeCode,
//	           t.Code = v.Code
//	reference  v.URL != "": t.URL = v.URL (and t.Version = v.Version when
//	           given); otherwise t.URL = "" (a local reference) and
//	           t.TargetID = v.RefID and (v.RefType = "" or t.TargetType =
//	           v.RefType); :identifier t.IdentifierSystem and
//	           t.IdentifierValue as a token
//	date       MatchTime(v.Prefix, v.Start, v.End, t.Lo, t.Hi)
//	number     MatchNumber(v.Prefix, v.Low, v.High, t.Lo, t.Hi)
//	quantity   as number, and v.Code = "" or (v.AnySystem and v.Code is
//	           t.Code or t.Unit) or (t.System = v.System and t.Code = v.Code)
//	uri        t.Value = v.Raw; :below t.Value starts with v.Raw; :above
//	           v.Raw starts with t.Value; :contains t.Value contains v.Raw
//	composite  for one Group g of P, component i of v.Parts matches a row
//	           of P with Group g and Component i (by its component's type)
//	:missing   Clause.Missing: no row of P; otherwise at least one
//
// A chained clause (Clause.Chain) matches when a Refs row of P points to a
// resource of one of Chain.Types that matches Chain.Clause. A reverse chain
// (Clause.Has) matches when a resource of Has.Type has a Refs row of
// Has.Param pointing to this resource and matches Has.Clause.
//
// # Errors
//
// ParseQuery reports what it cannot apply as fhir.Issues: warnings in
// Query.Issues when lenient, a *fhir.Error (status 400) when strict.
// Parameters of type special and oversized queries are always a 400.
// Query.Encode renders the applied query for the Bundle's self link.
package search
