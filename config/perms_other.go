//go:build !linux

package config

// readOnlyFS reports false where the mount flags are not read.
func readOnlyFS(string) bool { return false }
