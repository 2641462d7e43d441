package cmdline

import (
	"reflect"
	"testing"
)

func kv(k, v string) Param { return Param{Key: k, Value: v, HasValue: true} }
func flag(k string) Param  { return Param{Key: k} }

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want []Param
	}{
		{"empty", "", nil},
		{"only spaces", " \t\n", nil},
		{"plain", "console=ttyS0 quiet panic=-1\n",
			[]Param{kv("console", "ttyS0"), flag("quiet"), kv("panic", "-1")}},
		{"repeated module param", "virtio_mmio.device=512@0xfeb00e00:12 virtio_mmio.device=512@0xfeb00c00:11",
			[]Param{kv("virtio_mmio.device", "512@0xfeb00e00:12"), kv("virtio_mmio.device", "512@0xfeb00c00:11")}},
		{"quoted value", `foo.bar="a b" x=1`, []Param{kv("foo.bar", "a b"), kv("x", "1")}},
		{"quoted word", `"foo.bar=a b" x`, []Param{kv("foo.bar", "a b"), flag("x")}},
		{"quoted flag", `"a b" c`, []Param{flag("a b"), flag("c")}},
		{"inner quotes kept", `foo.bar=a"b c"d`, []Param{kv("foo.bar", `a"b c"d`)}},
		{"unterminated quote runs to the end", `foo="bar baz`, []Param{kv("foo", "bar baz")}},
		{"only an opening quote in value", `foo=" x`, []Param{kv("foo", " x")}},
		{"lone quote as value", `foo=" `, []Param{kv("foo", " ")}},
		{"quote value at end", `foo="`, []Param{kv("foo", "")}},
		{"empty value", "foo= bar", []Param{kv("foo", ""), flag("bar")}},
		{"value with equals", "a=b=c", []Param{kv("a", "b=c")}},
		{"leading equals is not a separator", "=foo", []Param{flag("=foo")}},
		{"leading equals then another", "=a=b", []Param{kv("=a", "b")}},
		{"lone quote dropped", `" x`, []Param{flag(" x")}},
		{"empty quoted word dropped", `"" x`, []Param{flag("x")}},
		{"tabs and runs of spaces", "a=1\t\t b  c\n", []Param{kv("a", "1"), flag("b"), flag("c")}},
		{"dashes end kernel params", "a=1 -- init=2 hull.debug=1", []Param{kv("a", "1")}},
		{"dashes with value are a param", "--=x a", []Param{kv("--", "x"), flag("a")}},
		{"no-break space separates", "a\xa0b", []Param{flag("a"), flag("b")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Parse(tc.in)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Parse(%q)\n got  %#v\n want %#v", tc.in, got, tc.want)
			}
		})
	}
}

func TestLookup(t *testing.T) {
	ps := Parse("hull.log=info hull-debug=1 hull.log=debug quiet")
	if v, ok := Lookup(ps, "hull.log"); !ok || v != "debug" {
		t.Errorf("Lookup hull.log = %q, %v; want last value debug", v, ok)
	}
	if v, ok := Lookup(ps, "hull_debug"); !ok || v != "1" {
		t.Errorf("Lookup hull_debug = %q, %v; want 1 (dash equals underscore)", v, ok)
	}
	if v, ok := Lookup(ps, "quiet"); !ok || v != "" {
		t.Errorf("Lookup quiet = %q, %v", v, ok)
	}
	if _, ok := Lookup(ps, "missing"); ok {
		t.Error("Lookup missing found something")
	}
}

func TestStringRoundTrip(t *testing.T) {
	for _, p := range []Param{
		flag("quiet"), kv("a", ""), kv("a", "b"), kv("foo.bar", "a b"),
		kv("foo.bar", `a"b c"d`), kv("x", "tab\there"),
	} {
		got := Parse(p.String())
		if len(got) != 1 || got[0] != p {
			t.Errorf("Parse(%q) = %#v, want %#v", p.String(), got, p)
		}
	}
}
