//go:build !unix

package backend

import "errors"

func shutdownWrite(uintptr) error { return errors.New("not supported") }
