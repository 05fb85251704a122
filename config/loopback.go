package config

import "net"

// LoopbackHost reports whether a host name or IP address is the local
// machine's loopback ("localhost", 127.0.0.0/8, ::1).
func LoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// LoopbackAddr reports whether a listen address ("host:port") binds only
// to loopback: what serving without authentication, or a development
// identity provider, is limited to.
func LoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	return err == nil && LoopbackHost(host)
}
