package bench

import (
	"strings"
	"testing"
)

func TestSelectMethods(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    string // names joined by ","; "" with wantErr
		wantErr string
	}{
		{"", strings.Join(MethodNames(), ","), ""},
		{"all", strings.Join(MethodNames(), ","), ""},
		{"qemu-boot,boot", "boot,qemu-boot", ""}, // run order, not list order
		{" uffd , uffd,mmap ", "uffd,mmap", ""},
		{"boot,snail", "", `unknown method "snail"`},
		{",", "", "no method named"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			ms, err := SelectMethods(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("SelectMethods(%q) err = %v, want %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, m := range ms {
				names = append(names, m.Name)
			}
			if got := strings.Join(names, ","); got != tc.want {
				t.Fatalf("SelectMethods(%q) = %s, want %s", tc.in, got, tc.want)
			}
		})
	}
}

func TestMethodsComplete(t *testing.T) {
	want := []string{MethodBoot, MethodEager, MethodUffd, MethodMmap, MethodUffdPrefetch, MethodUffdPrefetchAsync, MethodQEMUBoot, MethodQEMURestore}
	ms := Methods()
	if len(ms) != len(want) {
		t.Fatalf("%d methods, want %d", len(ms), len(want))
	}
	for i, m := range ms {
		if m.Name != want[i] || m.Desc == "" || m.check == nil || m.start == nil {
			t.Errorf("method %d: %+v: want %s with a description, check and start", i, m.Name, want[i])
		}
		if (m.prepare == nil) != (m.prepareKey == "") {
			t.Errorf("%s: prepare and prepareKey must come together", m.Name)
		}
	}
}

func TestQEMUMissingSkips(t *testing.T) {
	for _, m := range Methods() {
		if !strings.HasPrefix(m.Name, "qemu") {
			continue
		}
		if err := m.check(&Guest{}); err == nil || !strings.Contains(err.Error(), "qemu-system-x86_64") {
			t.Errorf("%s without QEMU: check = %v", m.Name, err)
		}
	}
}
