package server

// CachedCapabilities is how many CapabilityStatements s keeps.
func CachedCapabilities(s *Server) int {
	s.capsMu.Lock()
	defer s.capsMu.Unlock()
	return len(s.capsCache)
}
