package sqlstore

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/storage"
)

// compiler turns search clauses into SQL over the index tables. Every
// clause becomes a set of matching ids ("SELECT res_id ... WHERE res_type =
// ?"), so clauses, chains and reverse chains compose by nesting.
//
// Fragments are built in whatever order is convenient, so arg returns a
// numbered marker instead of "?"; finish puts the arguments in the order
// their markers appear in the final SQL.
type compiler struct {
	args []any
	// rel, ctx and db are set for a search with a release: the inner
	// criteria of _has and chains then see only released resources
	// (releasedIDs may run a query while compiling).
	rel storage.Release
	ctx context.Context
	db  Conn
	// reg knows the derived parameters (paramIs); nil treats every
	// parameter as stored under its own code
	reg *search.Registry
}

// paramIs is the condition that index rows aliased a ("" for none) hold
// values of parameter code of typ: the rows under its own code or, for a
// derived parameter (search.Derivation), its sources' rows, only those
// referencing its target type when it has one.
func (c *compiler) paramIs(a, typ, code string) string {
	col := func(n string) string {
		if a == "" {
			return n
		}
		return a + "." + n
	}
	if c.reg != nil {
		if p, ok := c.reg.Param(typ, code); ok {
			if d := p.Derived(); d != nil {
				cond := col("param") + " = " + c.arg(d.From[0])
				if len(d.From) > 1 {
					cond = col("param") + " IN (" + c.inList(d.From) + ")"
				}
				if d.Target != "" {
					cond += " AND " + col("target_type") + " = " + c.arg(keyVal(d.Target))
				}
				return cond
			}
		}
	}
	return col("param") + " = " + c.arg(code)
}

const (
	markOpen  = "?\x01"
	markClose = "\x02"
)

func (c *compiler) arg(v any) string {
	if s, ok := v.(string); ok && strings.IndexByte(s, 0) >= 0 {
		// a NUL no encoding below handled (an _id, say) matches nothing
		// rather than failing the query
		v = textVal(s)
	}
	c.args = append(c.args, v)
	return markOpen + strconv.Itoa(len(c.args)-1) + markClose
}

// finish replaces the markers by "?" and orders the arguments to match.
func (c *compiler) finish(sql string) (string, []any) {
	var (
		b    strings.Builder
		args = make([]any, 0, len(c.args))
	)
	b.Grow(len(sql))
	for {
		i := strings.Index(sql, markOpen)
		if i < 0 {
			b.WriteString(sql)
			return b.String(), args
		}
		j := strings.Index(sql[i:], markClose)
		n, _ := strconv.Atoi(sql[i+len(markOpen) : i+j])
		b.WriteString(sql[:i])
		b.WriteByte('?')
		args = append(args, c.args[n])
		sql = sql[i+j+len(markClose):]
	}
}

// tableFor is the index table of a parameter type.
func tableFor(t search.ParamType) string {
	switch t {
	case search.TypeString:
		return "idx_string"
	case search.TypeToken:
		return "idx_token"
	case search.TypeReference:
		return "idx_ref"
	case search.TypeDate:
		return "idx_date"
	case search.TypeNumber:
		return "idx_number"
	case search.TypeQuantity:
		return "idx_quantity"
	case search.TypeURI:
		return "idx_uri"
	}
	return ""
}

// likeEscape escapes LIKE wildcards; patterns use ESCAPE '\'.
func likeEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(s)
}

const escape = ` ESCAPE '\'`

// matchIDs returns SQL selecting the ids of resources of typ that satisfy cl.
func (c *compiler) matchIDs(typ string, cl *search.Clause) (string, error) {
	switch {
	case cl.Has != nil:
		inner, err := c.matchIDs(cl.Has.Type, cl.Has.Clause)
		if err != nil {
			return "", err
		}
		if inner, err = c.releasedIDs(cl.Has.Type, inner); err != nil {
			return "", err
		}
		return "SELECT h.target_id FROM idx_ref h WHERE h.res_type = " + c.arg(cl.Has.Type) + " AND " + c.paramIs("h", cl.Has.Type, cl.Has.Param) +
			" AND h.target_type = " + c.arg(typ) + " AND h.res_id IN (" + inner + ")", nil
	case cl.Chain != nil:
		var parts []string
		head := "SELECT ch.res_id FROM idx_ref ch WHERE ch.res_type = " + c.arg(typ) + " AND " + c.paramIs("ch", typ, cl.Param) + " AND ("
		for _, t := range cl.Chain.Types {
			inner, err := c.matchIDs(t, cl.Chain.Clause)
			if err != nil {
				return "", err
			}
			if inner, err = c.releasedIDs(t, inner); err != nil {
				return "", err
			}
			parts = append(parts, "(ch.target_type = "+c.arg(t)+" AND ch.target_id IN ("+inner+"))")
		}
		if len(parts) == 0 {
			return "", fmt.Errorf("chain on %s has no target type", cl.Param)
		}
		return head + strings.Join(parts, " OR ") + ")", nil
	}
	switch cl.Param {
	case "_id":
		return c.idClause(typ, cl)
	case "_lastUpdated":
		return c.lastUpdatedClause(typ, cl)
	}
	if cl.Modifier == search.ModMissing {
		present := c.presentIDs(typ, cl)
		if !cl.Missing {
			return present, nil
		}
		return "SELECT res_id FROM resources WHERE res_type = " + c.arg(typ) + " AND deleted = 0 AND res_id NOT IN (" + present + ")", nil
	}
	if cl.Type == search.TypeComposite {
		return c.compositeClause(typ, cl)
	}
	table := tableFor(cl.Type)
	if table == "" {
		return "", fmt.Errorf("parameter %s of type %s cannot be searched", cl.Param, cl.Type)
	}
	var ors []string
	for i := range cl.Values {
		cond, err := c.valueCond("i", cl.Type, cl.Modifier, &cl.Values[i])
		if err != nil {
			return "", err
		}
		ors = append(ors, cond)
	}
	q := "SELECT i.res_id FROM " + table + " i WHERE i.res_type = " + c.arg(typ) + " AND " + c.paramIs("i", typ, cl.Param) +
		" AND (" + strings.Join(ors, " OR ") + ")"
	if cl.Modifier == search.ModNot {
		// :not matches resources with no matching value, including those
		// without the parameter at all
		return "SELECT res_id FROM resources WHERE res_type = " + c.arg(typ) + " AND deleted = 0 AND res_id NOT IN (" + q + ")", nil
	}
	return q, nil
}

// presentIDs selects resources that have any value of the clause's parameter.
func (c *compiler) presentIDs(typ string, cl *search.Clause) string {
	t := cl.Type
	if t == search.TypeComposite && cl.Def != nil && len(cl.Def.Components) > 0 {
		t = cl.Def.Components[0].Type
	}
	table := tableFor(t)
	if table == "" {
		table = "idx_token"
	}
	return "SELECT res_id FROM " + table + " WHERE res_type = " + c.arg(typ) + " AND " + c.paramIs("", typ, cl.Param)
}

func (c *compiler) idClause(typ string, cl *search.Clause) (string, error) {
	var ids []string
	for _, v := range cl.Values {
		id := v.Code
		if id == "" {
			id = v.Raw
		}
		ids = append(ids, c.arg(id))
	}
	q := "SELECT res_id FROM resources WHERE res_type = " + c.arg(typ) + " AND deleted = 0"
	switch cl.Modifier {
	case search.ModMissing:
		if cl.Missing {
			return q + " AND 1 = 0", nil
		}
		return q, nil
	case search.ModNot:
		return q + " AND res_id NOT IN (" + strings.Join(ids, ", ") + ")", nil
	}
	return q + " AND res_id IN (" + strings.Join(ids, ", ") + ")", nil
}

func (c *compiler) lastUpdatedClause(typ string, cl *search.Clause) (string, error) {
	q := "SELECT res_id FROM resources u WHERE u.res_type = " + c.arg(typ) + " AND u.deleted = 0"
	if cl.Modifier == search.ModMissing {
		if cl.Missing {
			return q + " AND 1 = 0", nil
		}
		return q, nil
	}
	var ors []string
	for i := range cl.Values {
		v := &cl.Values[i]
		lo, hi := c.arg(timeKey(v.Start)), c.arg(timeKey(v.End))
		ors = append(ors, rangeCond(v.Prefix, "u.last_updated", "u.last_updated", lo, hi))
	}
	return q + " AND (" + strings.Join(ors, " OR ") + ")", nil
}

// rangeCond compiles a prefix comparison of an indexed range [tlo, thi]
// against a searched range [slo, shi] (see search.Prefix).
func rangeCond(p search.Prefix, tlo, thi, slo, shi string) string {
	eq := tlo + " >= " + slo + " AND " + thi + " <= " + shi
	switch p {
	case search.PrefixNe:
		return "(" + tlo + " < " + slo + " OR " + thi + " > " + shi + ")"
	case search.PrefixGt:
		return thi + " > " + shi
	case search.PrefixLt:
		return tlo + " < " + slo
	case search.PrefixGe:
		return "(" + thi + " > " + shi + " OR (" + eq + "))"
	case search.PrefixLe:
		return "(" + tlo + " < " + slo + " OR (" + eq + "))"
	case search.PrefixSa:
		return tlo + " > " + shi
	case search.PrefixEb:
		return thi + " < " + slo
	case search.PrefixAp:
		return "(" + tlo + " <= " + shi + " AND " + thi + " >= " + slo + ")"
	}
	return "(" + eq + ")"
}

// valueCond compiles one value against index rows aliased a.
func (c *compiler) valueCond(a string, t search.ParamType, m search.Modifier, v *search.Value) (string, error) {
	col := func(name string) string { return a + "." + name }
	switch t {
	case search.TypeString:
		switch m {
		case search.ModExact:
			return col("exact") + " = " + c.arg(textVal(v.Raw)), nil
		case search.ModContains:
			return fullCol(a, "norm") + " LIKE " + c.arg("%"+likeEscape(textVal(v.Text))+"%") + escape, nil
		}
		return c.prefixCond(a, "norm", v.Text), nil
	case search.TypeToken:
		switch m {
		case search.ModText:
			return col("text") + " LIKE " + c.arg(likeEscape(textVal(v.Text))+"%") + escape, nil
		case search.ModOfType:
			return "(" + col("type_system") + " = " + c.arg(textVal(v.TypeSystem)) + " AND " + col("type_code") + " = " + c.arg(textVal(v.TypeCode)) +
				" AND " + col("code") + " = " + c.arg(keyVal(v.Code)) + ")", nil
		}
		var conds []string
		if !v.AnySystem {
			conds = append(conds, col("system")+" = "+c.arg(keyVal(v.System)))
		}
		if v.Code != "" {
			conds = append(conds, col("code")+" = "+c.arg(keyVal(v.Code)))
		}
		if len(conds) == 0 {
			return "1 = 1", nil
		}
		return "(" + strings.Join(conds, " AND ") + ")", nil
	case search.TypeReference:
		if m == search.ModIdentifier {
			conds := []string{col("ident_value") + " = " + c.arg(textVal(v.Code))}
			if !v.AnySystem {
				conds = append(conds, col("ident_system")+" = "+c.arg(textVal(v.System)))
			}
			return "(" + strings.Join(conds, " AND ") + ")", nil
		}
		if v.URL != "" && v.RefID == "" {
			cond := col("url") + " = " + c.arg(textVal(v.URL))
			if v.Version != "" {
				cond += " AND " + col("version") + " = " + c.arg(textVal(v.Version))
			}
			return "(" + cond + ")", nil
		}
		cond := col("target_id") + " = " + c.arg(keyVal(v.RefID))
		if v.RefType != "" {
			cond += " AND " + col("target_type") + " = " + c.arg(keyVal(v.RefType))
		}
		return "(" + cond + ")", nil
	case search.TypeDate:
		return rangeCond(v.Prefix, col("lo"), col("hi"), c.arg(timeKey(v.Start)), c.arg(timeKey(v.End))), nil
	case search.TypeNumber:
		return rangeCond(v.Prefix, col("lo"), col("hi"), c.arg(numKey(v.Low)), c.arg(numKey(v.High))), nil
	case search.TypeQuantity:
		cond := rangeCond(v.Prefix, col("lo"), col("hi"), c.arg(numKey(v.Low)), c.arg(numKey(v.High)))
		if v.Code != "" {
			if v.AnySystem {
				cond += " AND (" + col("code") + " = " + c.arg(textVal(v.Code)) + " OR " + col("unit") + " = " + c.arg(textVal(v.Code)) + ")"
			} else {
				cond += " AND " + col("system") + " = " + c.arg(textVal(v.System)) + " AND " + col("code") + " = " + c.arg(textVal(v.Code))
			}
		}
		return "(" + cond + ")", nil
	case search.TypeURI:
		switch m {
		case search.ModBelow:
			return c.prefixCond(a, "value", v.Raw), nil
		case search.ModAbove:
			return c.arg(textVal(v.Raw)) + " LIKE (" + fullCol(a, "value") + " || '%')", nil
		case search.ModContains:
			return fullCol(a, "value") + " LIKE " + c.arg("%"+likeEscape(textVal(v.Raw))+"%") + escape, nil
		}
		return col("value") + " = " + c.arg(keyVal(v.Raw)), nil
	}
	return "", fmt.Errorf("parameters of type %s cannot be searched here", t)
}

// fullCol is the whole encoded value of a key column that may hold a
// shortened one (see textkey.go): its companion column when set.
func fullCol(a, col string) string {
	return "(CASE WHEN " + a + "." + col + "_full = '' THEN " + a + "." + col + " ELSE " + a + "." + col + "_full END)"
}

// prefixCond matches values of a key column that start with prefix: on
// the indexed column alone when the prefix is within what a shortened key
// keeps, else on the indexed part and then the whole value.
func (c *compiler) prefixCond(a, col, prefix string) string {
	e := textVal(prefix)
	if len(e) <= prefixSafe {
		return a + "." + col + " LIKE " + c.arg(likeEscape(e)+"%") + escape
	}
	return "(" + a + "." + col + " LIKE " + c.arg(likeEscape(e[:cutAt(e, prefixSafe)])+"%") + escape +
		" AND " + fullCol(a, col) + " LIKE " + c.arg(likeEscape(e)+"%") + escape + ")"
}

// compositeClause joins the component rows of one element (same grp).
func (c *compiler) compositeClause(typ string, cl *search.Clause) (string, error) {
	if cl.Def == nil || len(cl.Def.Components) == 0 {
		return "", fmt.Errorf("composite parameter %s has no components", cl.Param)
	}
	comps := cl.Def.Components
	var ors []string
	for vi := range cl.Values {
		v := &cl.Values[vi]
		if len(v.Parts) != len(comps) {
			return "", fmt.Errorf("composite value for %s has %d parts, want %d", cl.Param, len(v.Parts), len(comps))
		}
		var b strings.Builder
		b.WriteString("SELECT k0.res_id FROM " + tableFor(comps[0].Type) + " k0")
		for i := 1; i < len(comps); i++ {
			k := "k" + strconv.Itoa(i)
			b.WriteString(" JOIN " + tableFor(comps[i].Type) + " " + k + " ON " + k + ".res_type = k0.res_type AND " + k + ".res_id = k0.res_id AND " +
				k + ".param = k0.param AND " + k + ".grp = k0.grp AND " + k + ".comp = " + strconv.Itoa(i))
		}
		b.WriteString(" WHERE k0.res_type = " + c.arg(typ) + " AND " + c.paramIs("k0", typ, cl.Param) + " AND k0.comp = 0")
		for i := range comps {
			cond, err := c.valueCond("k"+strconv.Itoa(i), comps[i].Type, search.ModNone, &v.Parts[i])
			if err != nil {
				return "", err
			}
			b.WriteString(" AND " + cond)
		}
		ors = append(ors, b.String())
	}
	return strings.Join(ors, " UNION "), nil
}

// sortExpr is the SQL value a resource sorts by for one key; missing
// values sort last in either direction.
func (c *compiler) sortExpr(typ string, k search.SortKey) (string, error) {
	switch k.Param {
	case "_id":
		return "r.res_id", nil
	case "_lastUpdated":
		return "r.last_updated", nil
	}
	agg, col, missingAsc, missingDesc := "MIN", "", any(nil), any(nil)
	if k.Desc {
		agg = "MAX"
	}
	switch k.Type {
	case search.TypeDate:
		col, missingAsc, missingDesc = "lo", int64(math.MaxInt64), int64(math.MinInt64)
		if k.Desc {
			col = "hi"
		}
	case search.TypeNumber, search.TypeQuantity:
		col, missingAsc, missingDesc = "lo", math.MaxFloat64, -math.MaxFloat64
		if k.Desc {
			col = "hi"
		}
	case search.TypeString:
		col, missingAsc, missingDesc = "norm", "\U0010FFFF", ""
	case search.TypeToken:
		col, missingAsc, missingDesc = "code", "\U0010FFFF", ""
	case search.TypeReference:
		col, missingAsc, missingDesc = "target_id", "\U0010FFFF", ""
	case search.TypeURI:
		col, missingAsc, missingDesc = "value", "\U0010FFFF", ""
	default:
		return "", fmt.Errorf("cannot sort by %s", k.Param)
	}
	missing := missingAsc
	if k.Desc {
		missing = missingDesc
	}
	only := ""
	if k.Type == search.TypeToken {
		// a token sorts by its codes: a concept's text (a value with no
		// code, kept for :text) is not one
		only = " AND s.code <> ''"
	}
	return "COALESCE((SELECT " + agg + "(s." + col + ") FROM " + tableFor(k.Type) + " s WHERE s.res_type = r.res_type AND s.res_id = r.res_id AND " +
		c.paramIs("s", typ, k.Param) + only + "), " + c.arg(missing) + ")", nil
}

// cursor is the keyset position of the last row of a page.
type cursor struct {
	Keys []json.RawMessage `json:"k,omitempty"`
	ID   string            `json:"i"`
	Type string            `json:"t,omitempty"`
	// Stage is $everything's: 0 compartment, 1 referenced resources.
	Stage int `json:"s,omitempty"`
	// Snap and Off page through a sorted search's snapshot.
	Snap string `json:"n,omitempty"`
	Off  int    `json:"o,omitempty"`
}

func encodeSearchCursor(c cursor) string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeSearchCursor(s string) (cursor, error) {
	var c cursor
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || json.Unmarshal(b, &c) != nil || c.Off < 0 {
		return c, storage.ErrInvalidCursor
	}
	return c, nil
}

// Search implements storage.Reader.
func (s *Store) Search(ctx context.Context, req storage.SearchRequest) (res *storage.SearchResult, err error) {
	defer s.op(ctx, "search")(&err)
	return s.search(ctx, s.db, req)
}

func (t *tx) Search(ctx context.Context, req storage.SearchRequest) (*storage.SearchResult, error) {
	return t.s.search(ctx, t.c, req)
}

func (t *tx) Everything(ctx context.Context, req storage.EverythingRequest) (*storage.SearchResult, error) {
	return t.s.everything(ctx, t.c, req)
}

// Everything implements storage.Reader.
func (s *Store) Everything(ctx context.Context, req storage.EverythingRequest) (res *storage.SearchResult, err error) {
	defer s.op(ctx, "everything")(&err)
	return s.everything(ctx, s.db, req)
}

// countAll says whether a search that releases everything it matches
// counts its matches: when _total or _summary=count asks, and, with
// neither, on the first page only. A count reads every match, so counting
// on each page made paging through n matches cost n²/pageSize reads;
// later pages leave Bundle.total out (it is optional, and the first page
// gave it).
func countAll(q *search.Query, cursor string) bool {
	switch {
	case q.Summary == search.SummaryCount:
		return true
	case q.Total == search.TotalDefault:
		return cursor == ""
	}
	return q.Total != search.TotalNone
}

func (s *Store) search(ctx context.Context, db Conn, req storage.SearchRequest) (*storage.SearchResult, error) {
	q := req.Query
	if q.ResourceType == "" {
		return s.systemSearch(ctx, db, req)
	}
	typ := q.ResourceType
	c := &compiler{rel: req.Release, ctx: ctx, db: db, reg: s.registry}
	b := c.bound(typ)
	where := "r.res_type = " + c.arg(typ) + " AND r.deleted = 0" + c.boundCond(typ, "r.res_id", b)
	if req.PatientCompartment != "" {
		where += " AND r.res_id IN (SELECT res_id FROM idx_patient WHERE patient_id = " + c.arg(req.PatientCompartment) + " AND res_type = " + c.arg(typ) + ")"
	}
	// The most selective clause drives; every other plain index lookup is
	// restricted to the driver's ids, so a broad clause (a common code) is
	// never read whole.
	subs := make([]string, len(q.Clauses))
	for i := range q.Clauses {
		sub, err := c.matchIDs(typ, &q.Clauses[i])
		if err != nil {
			if errorsIsInvalid(err) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %v", errUnsearchable, err)
		}
		subs[i] = sub
	}
	driver := drivingClause(q.Clauses)
	for i, sub := range subs {
		if driver >= 0 && i != driver && plainLookup(sub) {
			sub += " AND i.res_id IN (" + subs[driver] + ")"
		}
		where += " AND r.res_id IN (" + sub + ")"
	}
	// rows are decided one by one unless the bound decides the type
	var rel storage.Release
	if req.Release != nil && !b.Exact {
		rel = req.Release
	}
	fetch := func(pos cursor, first bool, n int) ([]row, error) {
		sq := "SELECT r.res_id, r.version, r.last_updated, r.body FROM resources r WHERE " + where
		if !first {
			sq += " AND r.res_id > " + c.arg(pos.ID)
		}
		fq, fargs := c.finish(sq + " ORDER BY r.res_id LIMIT " + c.arg(n))
		return scanRows(ctx, db, typ, fq, fargs)
	}
	res := &storage.SearchResult{Total: -1}
	switch {
	case rel == nil && countAll(q, req.Cursor):
		cq, cargs := c.finish("SELECT COUNT(*) FROM resources r WHERE " + where)
		if err := db.QueryRow(ctx, cq, cargs...).Scan(&res.Total); err != nil {
			return nil, fmt.Errorf("search count: %w", err)
		}
	case rel != nil && (q.Total == search.TotalAccurate || q.Summary == search.SummaryCount):
		// a count of what is released, or none: never one that tells what is withheld
		n, err := countReleased(ctx, rel, fetch)
		if err != nil {
			return nil, err
		}
		res.Total = n
	}
	if q.Summary == search.SummaryCount || q.Count == 0 {
		return res, nil
	}
	if len(q.Sort) > 0 {
		// Sort values can change while a client pages: sorted searches page
		// through a snapshot of the ordered ids taken at the first page.
		if req.Cursor != "" {
			cur, err := decodeSearchCursor(req.Cursor)
			if err != nil || cur.Snap == "" {
				return nil, storage.ErrInvalidCursor
			}
			return s.snapshotPage(ctx, db, q, rel, res, typ, cur)
		}
		sel := "r.res_id"
		var order []string
		for i, k := range q.Sort {
			e, err := c.sortExpr(typ, k)
			if err != nil {
				return nil, fmt.Errorf("%w: %v", errUnsearchable, err)
			}
			sel += ", " + e + " AS s" + strconv.Itoa(i)
			dir := ""
			if k.Desc {
				dir = " DESC"
			}
			order = append(order, "s"+strconv.Itoa(i)+dir)
		}
		order = append(order, "res_id")
		ids, err := c.sortedIDs(ctx, db, "SELECT "+sel+" FROM resources r WHERE "+where, order)
		if err != nil {
			return nil, err
		}
		return s.firstSnapshotPage(ctx, db, q, rel, res, typ, ids)
	}
	start, first := cursor{}, true
	if req.Cursor != "" {
		cur, err := decodeSearchCursor(req.Cursor)
		if err != nil || len(cur.Keys) != 0 || cur.ID == "" {
			return nil, storage.ErrInvalidCursor
		}
		start, first = cur, false
	}
	matches, next, err := fillPage(ctx, rel, fetch, start, first, q.Count)
	if err != nil {
		return nil, err
	}
	res.Matches = matches
	if next != nil {
		res.Next = encodeSearchCursor(cursor{ID: next.ID})
	}
	if err := s.includes(ctx, db, q, req.Release, res); err != nil {
		return nil, err
	}
	return res, nil
}

// countReleased counts the released rows fetch reads, holding one chunk
// at a time.
func countReleased(ctx context.Context, rel storage.Release, fetch fetchFunc) (int, error) {
	n, pos, first := 0, cursor{}, true
	for {
		rows, err := fetch(pos, first, 1000)
		if err != nil {
			return 0, err
		}
		for _, rw := range rows {
			if rw.res == nil {
				continue
			}
			ok, err := rel.Released(ctx, rw.res)
			if err != nil {
				return 0, err
			}
			if ok {
				n++
			}
		}
		if len(rows) < 1000 {
			return n, nil
		}
		pos, first = rows[len(rows)-1].pos, false
	}
}

// errorsIsInvalid reports whether err is already a refusal of the search
// (a chain too broad to check), to be passed on as it is.
func errorsIsInvalid(err error) bool { return errors.Is(err, storage.ErrInvalidSearch) }

var errUnsearchable = fmt.Errorf("%w: unsupported search", storage.ErrInvalidSearch)

// includes adds _include and _revinclude targets (and one :iterate level).
// With a release they start from the released matches only (res.Matches
// holds nothing else) and each round keeps only what is released, so a
// resource is never reached through one the caller may not see.
func (s *Store) includes(ctx context.Context, db Conn, q *search.Query, rel storage.Release, res *storage.SearchResult) error {
	if len(q.Includes) == 0 && len(q.RevIncludes) == 0 || len(res.Matches) == 0 {
		return nil
	}
	seen := map[string]bool{}
	for _, r := range res.Matches {
		seen[r.Type+"/"+r.ID] = true
	}
	round := res.Matches
	for level := 0; level < 2; level++ {
		var found []*fhir.Resource
		for _, in := range q.Includes {
			if level == 1 && !in.Iterate {
				continue
			}
			got, err := s.includeTargets(ctx, db, in, round, seen)
			if err != nil {
				return err
			}
			found = append(found, got...)
		}
		for _, in := range q.RevIncludes {
			if level == 1 && !in.Iterate {
				continue
			}
			got, err := s.revIncludes(ctx, db, in, round, seen)
			if err != nil {
				return err
			}
			found = append(found, got...)
		}
		found, err := released(ctx, rel, found)
		if err != nil {
			return err
		}
		res.Included = append(res.Included, found...)
		if len(found) == 0 {
			break
		}
		round = found
	}
	return nil
}

func groupIDs(rs []*fhir.Resource) map[string][]string {
	out := map[string][]string{}
	for _, r := range rs {
		out[r.Type] = append(out[r.Type], r.ID)
	}
	return out
}

func (c *compiler) inList(vals []string) string {
	ph := make([]string, len(vals))
	for i, v := range vals {
		ph[i] = c.arg(v)
	}
	return strings.Join(ph, ", ")
}

func (s *Store) includeTargets(ctx context.Context, db Conn, in search.Include, from []*fhir.Resource, seen map[string]bool) ([]*fhir.Resource, error) {
	var refs [][2]string
	for typ, ids := range groupIDs(from) {
		if in.Source != "" && in.Source != typ {
			continue
		}
		c := &compiler{reg: s.registry}
		q := "SELECT DISTINCT target_type, target_id FROM idx_ref WHERE res_type = " + c.arg(typ) + " AND res_id IN (" + c.inList(ids) + ") AND target_id <> ''"
		if !in.Wildcard {
			q += " AND " + c.paramIs("", typ, in.Param)
		}
		if in.Target != "" {
			q += " AND target_type = " + c.arg(in.Target)
		}
		if err := collectRefs(ctx, db, "_include", c, q, seen, &refs); err != nil {
			return nil, err
		}
	}
	return s.loadMany(ctx, db, refs)
}

func (s *Store) revIncludes(ctx context.Context, db Conn, in search.Include, from []*fhir.Resource, seen map[string]bool) ([]*fhir.Resource, error) {
	var refs [][2]string
	for typ, ids := range groupIDs(from) {
		if in.Target != "" && in.Target != typ {
			continue
		}
		c := &compiler{reg: s.registry}
		q := "SELECT DISTINCT res_type, res_id FROM idx_ref WHERE target_type = " + c.arg(typ) + " AND target_id IN (" + c.inList(ids) + ")"
		if in.Source != "" {
			q += " AND res_type = " + c.arg(in.Source)
		}
		if !in.Wildcard {
			q += " AND " + c.paramIs("", in.Source, in.Param)
		}
		if err := collectRefs(ctx, db, "_revinclude", c, q, seen, &refs); err != nil {
			return nil, err
		}
	}
	return s.loadMany(ctx, db, refs)
}

// collectRefs runs a query of (type, id) pairs and appends those not yet
// seen to refs.
func collectRefs(ctx context.Context, db Conn, what string, c *compiler, q string, seen map[string]bool, refs *[][2]string) error {
	sq, sargs := c.finish(q)
	rows, err := db.Query(ctx, sq, sargs...)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	for rows.Next() {
		var t, id string
		if err := rows.Scan(&t, &id); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if t != "" && !seen[t+"/"+id] {
			seen[t+"/"+id] = true
			*refs = append(*refs, [2]string{t, id})
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// loadMany reads current versions of (type, id) pairs, skipping deleted
// and missing ones, in a stable order.
func (s *Store) loadMany(ctx context.Context, db Conn, refs [][2]string) ([]*fhir.Resource, error) {
	byType := map[string][]string{}
	for _, r := range refs {
		byType[r[0]] = append(byType[r[0]], r[1])
	}
	types := make([]string, 0, len(byType))
	for t := range byType {
		types = append(types, t)
	}
	sort.Strings(types)
	var out []*fhir.Resource
	for _, t := range types {
		ids := byType[t]
		for start := 0; start < len(ids); start += 500 {
			chunk := ids[start:min(start+500, len(ids))]
			c := &compiler{}
			q := "SELECT res_id, version, last_updated, body FROM resources WHERE res_type = " + c.arg(t) + " AND deleted = 0 AND res_id IN (" + c.inList(chunk) + ") ORDER BY res_id"
			sq, sargs := c.finish(q)
			rs, err := scanResources(ctx, db, t, sq, sargs)
			if err != nil {
				return nil, err
			}
			out = append(out, rs...)
		}
	}
	return out, nil
}

func scanResources(ctx context.Context, db Conn, typ, q string, args []any) ([]*fhir.Resource, error) {
	rows, err := db.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	defer rows.Close()
	var out []*fhir.Resource
	for rows.Next() {
		var (
			id    string
			v, lu int64
			body  []byte
		)
		if err := rows.Scan(&id, &v, &lu, &body); err != nil {
			return nil, fmt.Errorf("load: %w", err)
		}
		out = append(out, &fhir.Resource{Type: typ, ID: id, VersionID: strconv.FormatInt(v, 10), LastUpdated: fromMicros(lu), Raw: body})
	}
	return out, rows.Err()
}

// systemSearch runs a search across types (GET [base]?...), ordered by type then id.
func (s *Store) systemSearch(ctx context.Context, db Conn, req storage.SearchRequest) (*storage.SearchResult, error) {
	q := req.Query
	if len(q.Sort) > 0 {
		return nil, fmt.Errorf("%w: _sort is not supported in a whole-system search", storage.ErrInvalidSearch)
	}
	types := q.Types
	if len(types) == 0 {
		types = fhir.ResourceTypes
	}
	c := &compiler{rel: req.Release, ctx: ctx, db: db, reg: s.registry}
	var (
		parts []string
		exact = true
	)
	for _, t := range types {
		b := c.bound(t)
		if b.None {
			continue
		}
		exact = exact && b.Exact
		where := "r.res_type = " + c.arg(t) + " AND r.deleted = 0" + c.boundCond(t, "r.res_id", b)
		for i := range q.Clauses {
			sub, err := c.matchIDs(t, &q.Clauses[i])
			if err != nil {
				if errorsIsInvalid(err) {
					return nil, err
				}
				return nil, fmt.Errorf("%w: %v", errUnsearchable, err)
			}
			where += " AND r.res_id IN (" + sub + ")"
		}
		parts = append(parts, where)
	}
	res := &storage.SearchResult{Total: -1}
	if len(parts) == 0 {
		if q.Total != search.TotalNone || q.Summary == search.SummaryCount {
			res.Total = 0
		}
		return res, nil
	}
	where := "((" + strings.Join(parts, ") OR (") + "))"
	var rel storage.Release
	if req.Release != nil && !exact {
		rel = req.Release
	}
	fetch := func(pos cursor, first bool, n int) ([]row, error) {
		sq := "SELECT r.res_type, r.res_id, r.version, r.last_updated, r.body FROM resources r WHERE " + where
		if !first {
			sq += " AND (r.res_type > " + c.arg(pos.Type) + " OR (r.res_type = " + c.arg(pos.Type) + " AND r.res_id > " + c.arg(pos.ID) + "))"
		}
		fq, fargs := c.finish(sq + " ORDER BY r.res_type, r.res_id LIMIT " + c.arg(n))
		return scanTypedRows(ctx, db, 0, fq, fargs)
	}
	switch {
	case rel == nil && countAll(q, req.Cursor):
		cq, cargs := c.finish("SELECT COUNT(*) FROM resources r WHERE " + where)
		if err := db.QueryRow(ctx, cq, cargs...).Scan(&res.Total); err != nil {
			return nil, fmt.Errorf("search count: %w", err)
		}
	case rel != nil && (q.Total == search.TotalAccurate || q.Summary == search.SummaryCount):
		n, err := countReleased(ctx, rel, fetch)
		if err != nil {
			return nil, err
		}
		res.Total = n
	}
	if q.Summary == search.SummaryCount || q.Count == 0 {
		return res, nil
	}
	start, first := cursor{}, true
	if req.Cursor != "" {
		cur, err := decodeSearchCursor(req.Cursor)
		if err != nil || cur.ID == "" {
			return nil, storage.ErrInvalidCursor
		}
		start, first = cur, false
	}
	matches, next, err := fillPage(ctx, rel, fetch, start, first, q.Count)
	if err != nil {
		return nil, err
	}
	res.Matches = matches
	if next != nil {
		res.Next = encodeSearchCursor(cursor{Type: next.Type, ID: next.ID})
	}
	return res, s.includes(ctx, db, q, req.Release, res)
}

// drivingClause picks the clause likely to match the fewest resources (its
// id set drives the query); -1 when there is none worth restricting by.
func drivingClause(cls []search.Clause) int {
	best, bestRank := -1, 0
	for i := range cls {
		cl := &cls[i]
		rank := 0
		switch {
		case cl.Modifier == search.ModNot || cl.Modifier == search.ModMissing || cl.Chain != nil || cl.Has != nil:
		case cl.Param == "_id":
			rank = 6
		case cl.Type == search.TypeReference && cl.Modifier != search.ModIdentifier:
			rank = 5 // patient=, subject=: one patient's resources
		case cl.Type == search.TypeToken && cl.Modifier == search.ModNone:
			rank = 4
		case cl.Type == search.TypeString || cl.Type == search.TypeURI:
			rank = 3
		}
		if rank > bestRank {
			best, bestRank = i, rank
		}
	}
	return best
}

// plainLookup reports whether a clause's id set is one index lookup
// ("SELECT i.res_id FROM idx_... i WHERE ..." with no subquery), which can
// be restricted to a set of ids.
func plainLookup(sub string) bool {
	const prefix = "SELECT i.res_id FROM idx_"
	return strings.HasPrefix(sub, prefix) && !strings.Contains(sub[len(prefix):], "SELECT") && !strings.Contains(sub, " UNION ")
}
