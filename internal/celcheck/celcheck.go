// Package celcheck compiles and evaluates the CEL expressions of custom
// health checks. An expression sees the object's top-level fields as
// variables (apiVersion, kind, metadata, spec, status, data) and the whole
// object as `object`; it must evaluate to a bool.
package celcheck

import (
	"errors"
	"fmt"

	"github.com/google/cel-go/cel"
)

var fields = []string{"apiVersion", "kind", "metadata", "spec", "status", "data", "object"}

func env() (*cel.Env, error) {
	opts := make([]cel.EnvOption, 0, len(fields))
	for _, f := range fields {
		opts = append(opts, cel.Variable(f, cel.DynType))
	}
	return cel.NewEnv(opts...)
}

// Program is a compiled expression.
type Program struct {
	src string
	prg cel.Program
}

// Compile checks and compiles an expression.
func Compile(expr string) (*Program, error) {
	e, err := env()
	if err != nil {
		return nil, err
	}
	ast, iss := e.Compile(expr)
	if iss.Err() != nil {
		return nil, fmt.Errorf("CEL %q: %w", expr, iss.Err())
	}
	if t := ast.OutputType(); t != cel.BoolType && t != cel.DynType {
		return nil, fmt.Errorf("CEL %q evaluates to %s, want bool", expr, t)
	}
	prg, err := e.Program(ast)
	if err != nil {
		return nil, fmt.Errorf("CEL %q: %w", expr, err)
	}
	return &Program{src: expr, prg: prg}, nil
}

// Eval runs the expression over an object (an unstructured map).
func (p *Program) Eval(obj map[string]any) (bool, error) {
	vars := map[string]any{"object": obj}
	for _, f := range fields[:len(fields)-1] {
		if v, ok := obj[f]; ok {
			vars[f] = v
		} else {
			vars[f] = map[string]any{}
		}
	}
	out, _, err := p.prg.Eval(vars)
	if err != nil {
		return false, fmt.Errorf("CEL %q: %w", p.src, err)
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, errors.New("CEL " + p.src + " did not evaluate to a bool")
	}
	return b, nil
}
