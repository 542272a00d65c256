package ir

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestEffectiveKey checks that key-prefix exceptions are Python fnmatch
// globs as ROLL's templates apply them: "[!a-m]" negates (path.Match,
// used here before, read "!" as a class member) and "*" crosses dots.
func TestEffectiveKey(t *testing.T) {
	tpl := &Template{KeyPrefixes: []PrefixRule{
		{Prefix: "thinker_config.text_config.", Unless: []string{"[!a-m]*_token_id", "vision_config*"}},
		{Prefix: "thinker_config."},
	}}
	got := map[string]string{}
	for _, k := range []string{"hidden_size", "video_token_id", "audio_token_id", "vision_config.depth", "!x_token_id"} {
		got[k] = tpl.EffectiveKey(k)
	}
	want := map[string]string{
		"hidden_size":         "thinker_config.text_config.hidden_size",
		"video_token_id":      "thinker_config.video_token_id",
		"audio_token_id":      "thinker_config.text_config.audio_token_id",
		"vision_config.depth": "thinker_config.vision_config.depth",
		"!x_token_id":         "thinker_config.!x_token_id",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("EffectiveKey (-want +got):\n%s", d)
	}
}
