package config

import "golang.org/x/sys/unix"

// readOnlyFS reports whether path is on a file system mounted read-only,
// where write bits mean nothing: a Kubernetes ConfigMap or Secret volume
// is one, whatever mode its files are given.
func readOnlyFS(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Flags&unix.ST_RDONLY != 0
}
