package server

// CachedCapabilities is how many CapabilityStatements s keeps.
func CachedCapabilities(s *Server) int {
	s.capsMu.Lock()
	defer s.capsMu.Unlock()
	return len(s.capsCache)
}

// CapabilitiesKept says whether s keeps the CapabilityStatement of base.
func CapabilitiesKept(s *Server, base string) bool {
	s.capsMu.Lock()
	defer s.capsMu.Unlock()
	_, ok := s.capsCache[base]
	return ok
}
