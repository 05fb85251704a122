package search

import "strings"

// Match reports whether the index of one resource satisfies a plain clause,
// with the semantics the package documentation sets out for stores. It is
// the reference for SQL compilers and serves in-memory filtering. Chained
// and reverse-chained clauses (Chain, Has) involve other resources: Match
// reports false for them, and the caller evaluates them.
func (c *Clause) Match(ix *Index) bool {
	if c.Chain != nil || c.Has != nil {
		return false
	}
	if c.Modifier == ModMissing {
		return c.hasRow(ix) != c.Missing
	}
	if c.Modifier == ModNot {
		for _, v := range c.Values {
			if c.matchValue(ix, v) {
				return false
			}
		}
		return true
	}
	for _, v := range c.Values {
		if c.matchValue(ix, v) {
			return true
		}
	}
	return false
}

func (c *Clause) hasRow(ix *Index) bool {
	at := func(a At) bool { return a.Param == c.Param && a.Group == 0 }
	if c.Type == TypeComposite {
		at = func(a At) bool { return a.Param == c.Param }
	}
	return anyAt(ix.Strings, at) || anyAt(ix.Tokens, at) || anyAt(ix.Refs, at) || anyAt(ix.Dates, at) ||
		anyAt(ix.Numbers, at) || anyAt(ix.Quantities, at) || anyAt(ix.URIs, at)
}

type atter interface{ at() At }

func (v StringValue) at() At   { return v.At }
func (v TokenValue) at() At    { return v.At }
func (v RefValue) at() At      { return v.At }
func (v DateValue) at() At     { return v.At }
func (v NumberValue) at() At   { return v.At }
func (v QuantityValue) at() At { return v.At }
func (v URIValue) at() At      { return v.At }

func anyAt[T atter](rows []T, pred func(At) bool) bool {
	for _, r := range rows {
		if pred(r.at()) {
			return true
		}
	}
	return false
}

func (c *Clause) matchValue(ix *Index, v Value) bool {
	if c.Type == TypeComposite {
		groups := map[int]bool{}
		for _, a := range allAts(ix) {
			if a.Param == c.Param && a.Group > 0 {
				groups[a.Group] = true
			}
		}
		for g := range groups {
			ok := true
			for i, part := range v.Parts {
				comp := c.Def.Components[i]
				want := At{Param: c.Param, Group: g, Component: i}
				if !matchTyped(ix, comp.Type, ModNone, part, func(a At) bool { return a == want }) {
					ok = false
					break
				}
			}
			if ok {
				return true
			}
		}
		return false
	}
	return matchTyped(ix, c.Type, c.Modifier, v, func(a At) bool { return a.Param == c.Param && a.Group == 0 })
}

func allAts(ix *Index) []At {
	var out []At
	add := func(a At) { out = append(out, a) }
	for _, r := range ix.Tokens {
		add(r.At)
	}
	for _, r := range ix.Strings {
		add(r.At)
	}
	for _, r := range ix.Refs {
		add(r.At)
	}
	for _, r := range ix.Dates {
		add(r.At)
	}
	for _, r := range ix.Numbers {
		add(r.At)
	}
	for _, r := range ix.Quantities {
		add(r.At)
	}
	for _, r := range ix.URIs {
		add(r.At)
	}
	return out
}

// matchTyped reports whether a row selected by at matches v.
func matchTyped(ix *Index, t ParamType, mod Modifier, v Value, at func(At) bool) bool {
	switch t {
	case TypeString:
		for _, r := range ix.Strings {
			if !at(r.At) {
				continue
			}
			switch mod {
			case ModExact:
				if r.Exact == v.Raw {
					return true
				}
			case ModContains:
				if strings.Contains(r.Norm, v.Text) {
					return true
				}
			default:
				if strings.HasPrefix(r.Norm, v.Text) {
					return true
				}
			}
		}
	case TypeToken:
		for _, r := range ix.Tokens {
			if !at(r.At) {
				continue
			}
			switch mod {
			case ModText:
				if r.Text != "" && strings.HasPrefix(r.Text, v.Text) {
					return true
				}
			case ModOfType:
				if r.TypeSystem == v.TypeSystem && r.TypeCode == v.TypeCode && r.Code == v.Code {
					return true
				}
			default:
				if (v.AnySystem || r.System == v.System) && (v.Code == "" || r.Code == v.Code) && r.Code != "" {
					return true
				}
			}
		}
	case TypeReference:
		for _, r := range ix.Refs {
			if !at(r.At) {
				continue
			}
			switch {
			case mod == ModIdentifier:
				if r.IdentifierValue == v.Code && (v.AnySystem || r.IdentifierSystem == v.System) {
					return true
				}
			case v.URL != "":
				if r.URL == v.URL && (v.Version == "" || r.Version == v.Version) {
					return true
				}
			default:
				if r.URL == "" && r.TargetID == v.RefID && (v.RefType == "" || r.TargetType == v.RefType) {
					return true
				}
			}
		}
	case TypeDate:
		for _, r := range ix.Dates {
			if at(r.At) && MatchTime(v.Prefix, v.Start, v.End, r.Lo, r.Hi) {
				return true
			}
		}
	case TypeNumber:
		for _, r := range ix.Numbers {
			if at(r.At) && MatchNumber(v.Prefix, v.Low, v.High, r.Lo, r.Hi) {
				return true
			}
		}
	case TypeQuantity:
		for _, r := range ix.Quantities {
			if !at(r.At) || !MatchNumber(v.Prefix, v.Low, v.High, r.Lo, r.Hi) {
				continue
			}
			switch {
			case v.Code == "":
				return true
			case v.AnySystem && (r.Code == v.Code || r.Unit == v.Code):
				return true
			case r.System == v.System && r.Code == v.Code:
				return true
			}
		}
	case TypeURI:
		for _, r := range ix.URIs {
			if !at(r.At) {
				continue
			}
			switch mod {
			case ModBelow:
				if strings.HasPrefix(r.Value, v.Raw) {
					return true
				}
			case ModAbove:
				if strings.HasPrefix(v.Raw, r.Value) {
					return true
				}
			case ModContains:
				if strings.Contains(r.Value, v.Raw) {
					return true
				}
			default:
				if r.Value == v.Raw {
					return true
				}
			}
		}
	}
	return false
}
