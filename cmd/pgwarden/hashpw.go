package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/pgwarden/pgwarden/authcore"
)

func hashPassword(algo string, stdin io.Reader, stdout, stderr io.Writer) error {
	pw, err := readPassword(stdin, stderr)
	if err != nil {
		return err
	}
	h, err := authcore.HashPassword(algo, pw)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, h)
	return nil
}

// readPassword prompts twice without echo on a terminal, else reads one
// line of stdin. The password is never echoed or logged.
func readPassword(stdin io.Reader, stderr io.Writer) (string, error) {
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(stderr, "Password: ")
		a, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(stderr)
		if err != nil {
			return "", err
		}
		fmt.Fprint(stderr, "Again: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(stderr)
		if err != nil {
			return "", err
		}
		if string(a) != string(b) {
			return "", errors.New("passwords do not match")
		}
		if len(a) == 0 {
			return "", errors.New("empty password")
		}
		return string(a), nil
	}
	return readPasswordLine(stdin)
}

// readPasswordLine reads one line of stdin as the password, with no limit
// short of 64 KiB and no truncation.
func readPasswordLine(stdin io.Reader) (string, error) {
	line, err := bufio.NewReaderSize(stdin, 64*1024).ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		return "", errors.New("no password on stdin")
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if line == "" {
		return "", errors.New("empty password")
	}
	return line, nil
}
