package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// Load reads and validates the configuration file at path. On failure the
// error is an Errors listing every problem found, in file order.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, Errors{{File: path, Msg: "cannot read configuration: " + unwrapPath(err)}}
	}
	return Parse(path, data)
}

// Parse validates a configuration held in memory. name is used in errors
// and as the base for relative paths inside the file (certificates, keys,
// secret files), which are resolved against name's directory.
func Parse(name string, data []byte) (*Config, error) {
	root, perr := parseYAML(data)
	if perr != nil {
		perr.File = name
		return nil, Errors{perr}
	}
	d := &decoder{file: name, dir: filepath.Dir(name), budget: maxNodes}
	c := &Config{File: name}
	d.config(root, c)
	for i := 0; i < len(d.later); i++ {
		d.later[i]()
	}
	if len(d.errs) > 0 {
		return nil, sortErrors(d.errs)
	}
	return c, nil
}

func unwrapPath(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseYAML parses exactly one YAML document. The parser's own errors are
// reworded into Error so that syntax errors read like every other error.
func parseYAML(data []byte) (root *yaml.Node, e *Error) {
	defer func() {
		// The YAML library is not ours; a panic in it must not take
		// `hike config check` down with a stack trace.
		if r := recover(); r != nil {
			root, e = nil, &Error{Msg: fmt.Sprintf("YAML parser failed: %v", r)}
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return &yaml.Node{Kind: yaml.MappingNode, Line: 1, Column: 1}, nil
		}
		return nil, yamlError(err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		return nil, &Error{Line: extra.Line, Msg: "a configuration is one YAML document; remove the second one (after ---)"}
	case !errors.Is(err, io.EOF):
		return nil, yamlError(err)
	}
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		return doc.Content[0], nil
	}
	return &yaml.Node{Kind: yaml.MappingNode, Line: 1, Column: 1}, nil
}

func yamlError(err error) *Error {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Error{Line: line, Msg: "YAML syntax: " + m[2]}
	}
	return &Error{Msg: "YAML syntax: " + msg}
}

// path decodes a file or directory path; relative paths are relative to
// the configuration file, so a config and its certificates move together.
func (d *decoder) path(n *yaml.Node, path string, dst *string) bool {
	var s string
	if !d.str(n, path, &s) {
		return false
	}
	if s == "" {
		d.errorf(n, path, "empty path")
		return false
	}
	if !filepath.IsAbs(s) {
		s = filepath.Join(d.dir, s)
	}
	*dst = s
	return true
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// name decodes an identifier used on the command line and in metric labels.
func (d *decoder) name(n *yaml.Node, path string, dst *string) bool {
	var s string
	if !d.str(n, path, &s) {
		return false
	}
	if !nameRE.MatchString(s) {
		d.errorf(n, path, "%q is not a valid name (letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64)", s)
		return false
	}
	*dst = s
	return true
}

// dict decodes a mapping whose keys are names chosen by the operator
// (secrets, pools), in file order.
func (d *decoder) dict(n *yaml.Node, path string, each func(key string, k, v *yaml.Node, path string)) {
	if n = d.resolve(n); n == nil {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "expected a mapping of names, got %s", d.describe(n))
		return
	}
	lines := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		var key string
		if !d.name(k, path, &key) {
			continue
		}
		kp := join(path, key)
		if l, dup := lines[key]; dup {
			d.errorf(k, kp, "duplicate name (first defined on line %d)", l)
			continue
		}
		lines[key] = k.Line
		each(key, k, v, kp)
	}
}
