// copy-tree copies a file or a directory tree to a new place, keeping file modes and
// symbolic links. It is a static binary with no dependencies so that it can run inside any
// image, even one built FROM scratch: the operator copies it into a shared volume and runs
// it in the plugin's image to copy the plugin directory out.
//
//	copy-tree SOURCE DESTINATION
//
// DESTINATION must not exist yet (its parent must). Exit codes: 0 copied, 1 failed
// (the reason on stderr), 2 usage.
package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: copy-tree SOURCE DESTINATION")
		os.Exit(2)
	}
	if err := copyTree(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintf(os.Stderr, "copy-tree: %v\n", err)
		os.Exit(1)
	}
}

func copyTree(source, destination string) error {
	info, err := os.Lstat(source)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s does not exist in this image; set spec.source.image.path to "+
			"the folder that holds plugin.json", source)
	}
	if err != nil {
		return err
	}
	if _, err := os.Lstat(destination); err == nil {
		return fmt.Errorf("%s exists already; copy-tree only creates new paths", destination)
	}
	if !info.IsDir() {
		return copyEntry(source, destination, info)
	}
	return filepath.WalkDir(source, func(path string, entry fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		relative, err := filepath.Rel(source, path)
		if err != nil {
			return err
		}
		info, err := entry.Info()
		if err != nil {
			return err
		}
		return copyEntry(path, filepath.Join(destination, relative), info)
	})
}

func copyEntry(source, destination string, info fs.FileInfo) error {
	mode := info.Mode()
	switch {
	case mode.IsDir():
		// Owner write access, so the tree can be cleaned up by whoever copied it.
		return os.Mkdir(destination, mode.Perm()|0o700)
	case mode&fs.ModeSymlink != 0:
		target, err := os.Readlink(source)
		if err != nil {
			return err
		}
		return os.Symlink(target, destination)
	case mode.IsRegular():
		return copyFile(source, destination, mode.Perm())
	default:
		return fmt.Errorf("%s is neither a file, a folder nor a symbolic link (%s)", source, mode.Type())
	}
}

func copyFile(source, destination string, perm fs.FileMode) error {
	in, err := os.Open(source)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(destination, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm|0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copying %s: %w", source, err)
	}
	if err := out.Close(); err != nil {
		return err
	}
	// The umask may have narrowed the mode at creation; executables must stay executable.
	return os.Chmod(destination, perm|0o600)
}
