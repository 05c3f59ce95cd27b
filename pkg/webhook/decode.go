package webhook

import (
	"bytes"
	stdjson "encoding/json"
	"errors"
	"fmt"
	"reflect"

	json "github.com/goccy/go-json"
)

// decode unmarshals a verified payload into v.
//
// go-json, like encoding/json, takes the last value of a key that appears
// more than once (a repeated object is decoded over the earlier one, field
// by field) and matches keys case-insensitively. The signature covers the
// whole body, so which value wins is the sender's choice either way;
// GitHub and GitLab never repeat a key.
//
// go-json describes some malformed bodies by bytes that are not in them
// (an empty body is "invalid character '\x00'"); a body it refuses is
// described by encoding/json instead, in terms a sender can act on.
func decode(b []byte, v any) error {
	if len(bytes.TrimSpace(b)) == 0 {
		return errors.New("the body is empty")
	}
	err := json.Unmarshal(b, v)
	if err == nil {
		return nil
	}
	stdErr := stdjson.Unmarshal(b, v)
	var syntax *stdjson.SyntaxError
	var typ *stdjson.UnmarshalTypeError
	switch {
	case stdErr == nil:
		return err
	case errors.As(stdErr, &syntax) && syntax.Offset >= int64(len(b)) && syntax.Error() == "unexpected end of JSON input":
		return fmt.Errorf("the JSON body ends early after %d bytes (truncated?)", len(b))
	case errors.As(stdErr, &syntax):
		return fmt.Errorf("the body is not valid JSON: %s (at byte %d)", syntax.Error(), syntax.Offset)
	case errors.As(stdErr, &typ) && typ.Field != "":
		return fmt.Errorf("field %s holds a JSON %s where %s belongs", typ.Field, typ.Value, jsonKind(typ.Type))
	default:
		return stdErr
	}
}

// jsonKind names what JSON value decodes into t.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	default:
		return "an object"
	}
}
