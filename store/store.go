// Package store keeps pgwarden's users where the configuration says: the
// users file ([store] kind = "file"), or a pgwarden schema in PostgreSQL
// (kind = "postgres") that every instance shares, with NOTIFY telling them
// of each change.
package store

import (
	"context"

	"github.com/pgwarden/pgwarden/authcore"
	"github.com/pgwarden/pgwarden/config"
)

// Users is a place users live.
type Users interface {
	// Load reads every user, checked as the users file is.
	Load(ctx context.Context) (*authcore.Users, error)
	// Update changes the users all or nothing, under a lock that
	// serializes writers: check sees the new users exactly as they will
	// be read back, and refuses them with an error.
	Update(ctx context.Context, change func([]*authcore.User) ([]*authcore.User, error), check func(*authcore.Users) error) error
	// Where names the store for messages.
	Where() string
	Close()
}

// Open opens the store cfg names; for the postgres kind it checks that the
// schema is the one this binary knows.
func Open(ctx context.Context, cfg *config.Config) (Users, error) {
	if cfg.Store.Kind == "postgres" {
		return OpenPostgres(ctx, cfg)
	}
	return File{Path: cfg.Users.File}, nil
}

// File is the users file.
type File struct{ Path string }

// Load implements Users.
func (f File) Load(context.Context) (*authcore.Users, error) { return authcore.LoadUsers(f.Path) }

// Update implements Users with the users file's locked, atomic writer.
func (f File) Update(_ context.Context, change func([]*authcore.User) ([]*authcore.User, error), check func(*authcore.Users) error) error {
	return authcore.UpdateUsersFileChecked(f.Path, change, check)
}

// Where implements Users.
func (f File) Where() string { return f.Path }

// Close implements Users.
func (File) Close() {}
