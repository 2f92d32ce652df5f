package main

import (
	"context"
	"errors"
	"reflect"
	"testing"
)

// fakeService records its calls into a shared log.
type fakeService struct {
	name              string
	log               *[]string
	startErr, stopErr error
}

func (s *fakeService) Name() string { return s.name }
func (s *fakeService) Start(ctx context.Context, env *ServiceEnv) error {
	*s.log = append(*s.log, "start "+s.name)
	return s.startErr
}
func (s *fakeService) Stop(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		return errors.New("stop without a deadline")
	}
	*s.log = append(*s.log, "stop "+s.name)
	return s.stopErr
}

func TestServicesLifecycle(t *testing.T) {
	boom := errors.New("boom")
	cases := []struct {
		name     string
		startErr map[string]error
		stopErr  map[string]error
		wantLog  []string
		wantErr  error
	}{
		{"all start, stop in reverse", nil, nil, []string{"start a", "start b", "start c", "stop c", "stop b", "stop a"}, nil},
		{"failed start stops the started", map[string]error{"b": boom}, nil, []string{"start a", "start b", "stop a"}, boom},
		{"stop errors are joined, all stopped", nil, map[string]error{"c": boom, "a": boom}, []string{"start a", "start b", "start c", "stop c", "stop b", "stop a"}, boom},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var log []string
			var svcs []Service
			for _, n := range []string{"a", "b", "c"} {
				svcs = append(svcs, &fakeService{name: n, log: &log, startErr: c.startErr[n], stopErr: c.stopErr[n]})
			}
			started, err := startServices(context.Background(), &ServiceEnv{}, svcs)
			if err == nil {
				err = stopServices(started)
			}
			if !reflect.DeepEqual(log, c.wantLog) {
				t.Errorf("calls %q, want %q", log, c.wantLog)
			}
			if (c.wantErr == nil) != (err == nil) || (c.wantErr != nil && !errors.Is(err, c.wantErr)) {
				t.Errorf("err %v, want %v", err, c.wantErr)
			}
		})
	}
}
