"""The real CLI, in subprocesses: the tiny end-to-end run and one-line errors."""

import json
import os
import subprocess
import sys

import pytest

from conftest import eval_argv, synth_argv
from sea_align.runtime.io import DataError

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def sea(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "sea_align.cli", *args], capture_output=True, text=True, env=ENV, cwd=cwd, timeout=900
    )


def test_tiny_run_end_to_end(tmp_path):
    out = tmp_path / "run"
    r = sea("run", "--config", "tiny", "--out", str(out), "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    for rel in (
        "prepared.jsonl",
        "embeddings/index.jsonl",
        "adapter/adapter_config.json",
        "eval/base/summary.json",
        "eval/aligned/summary.json",
        "report.md",
        "manifest.json",
    ):
        assert (out / rel).is_file(), rel
    assert list((out / "embeddings").glob("*.safetensors"))
    man = json.loads((out / "manifest.json").read_text())
    assert {"seed", "versions", "git_sha", "decoding", "hardware", "stages"} <= set(man)
    assert {"prepare", "synthesize", "align", "evaluate_base", "evaluate_aligned"} <= set(man["stages"])
    s = json.loads((out / "eval/aligned/summary.json").read_text())
    assert {"n", "n_scored", "n_unscored", "asr", "per_category", "refusal_rate_harmless"} <= set(s)
    report = (out / "report.md").read_text()
    assert "| ASR (macro over categories) |" in report and "checks the plumbing" in report
    # resume: a finished run does no stage again
    before = (out / "embeddings" / "index.jsonl").read_text()
    r2 = sea("run", "--config", "tiny", "--out", str(out), "--quiet")
    assert r2.returncode == 0
    man2 = json.loads((out / "manifest.json").read_text())
    assert man2["stages"]["synthesize"] == man["stages"]["synthesize"]
    assert (out / "embeddings" / "index.jsonl").read_text() == before


@pytest.mark.parametrize(
    "args,needle",
    [
        (["prepare", "--data", "{tmp}/bad.jsonl", "--out", "{tmp}/p.jsonl"], "bad.jsonl:2: malformed JSON"),
        (["prepare", "--data", "{tmp}/empty.jsonl", "--out", "{tmp}/p.jsonl"], "empty data set"),
        (["prepare", "--data", "{tmp}/nofield.jsonl", "--out", "{tmp}/p.jsonl"], "missing field 'response'"),
        (
            synth_argv("{tmp}/good.jsonl", "{tmp}/e", model="tiny-random-nope"),
            "unsupported model family",
        ),
        (
            synth_argv("{tmp}/good.jsonl", "{tmp}/e", modality="audio"),
            "has no audio input",
        ),
        (
            synth_argv("{tmp}/prep.jsonl", "{tmp}/e", "--init", "text", "--init-text", "the phrase"),
            "synthesize.init_text: 'the phrase' has neither",
        ),
        (["run", "--config", "tiny", "--out", "{tmp}/r", "synthesize.bogus=1"], "unknown key 'synthesize.bogus'"),
        (
            eval_argv("{tmp}/good.jsonl", "{tmp}/e", "--judge", "nosuch"),
            "argument --judge: unknown judge 'nosuch' (known: ",
        ),
        (
            eval_argv("{tmp}/good.jsonl", "{tmp}/e", "--bogus"),
            "unrecognized arguments: --bogus",
        ),
        (
            eval_argv("{tmp}/good.jsonl", "{tmp}/e", "--device", "cuda:99"),
            "device 'cuda:99'",
        ),
        (["synthesize", "--data", "{tmp}/good.jsonl", "--out", "{tmp}/e", "--device", "gpu"], "expected one of"),
        (["evaluate", "--out", "{tmp}/e"], "no benchmark (give --bench FILE"),
    ],
)
def test_one_line_errors(tmp_path, args, needle):
    (tmp_path / "bad.jsonl").write_text('{"instruction": "a", "response": "b"}\n{oops\n')
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "nofield.jsonl").write_text('{"instruction": "a"}\n')
    pair = {"prompt": "What does the image say?", "target": "The image says 'x'."}
    row = {
        "id": "1",
        "instruction": "do x",
        "response": "I can't help with that.",
        "key_phrase": "x",
        "phrase_type": "activity",
        "detoxified": "do the activity",
        "aux": {"image": [pair], "audio": [pair]},
    }  # a valid prepared row
    (tmp_path / "good.jsonl").write_text(json.dumps(row) + "\n")
    (tmp_path / "prep.jsonl").write_text(json.dumps(row) + "\n")
    r = sea(*[a.format(tmp=tmp_path) for a in args])
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if line.startswith("sea: error")]
    assert len(lines) == 1 and needle in lines[0], r.stderr[-1500:]
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "p.jsonl").exists()


HEAVY = ("torch", "transformers")


@pytest.mark.parametrize(
    "argv,code",
    [
        (["--help"], 0),
        (["evaluate", "--help"], 0),
        (["synthesize", "--help"], 0),
        (["evaluate", "--model", "m", "--bench", "b", "--out", "o", "--judge", "x"], 2),
    ],
)
def test_help_and_bad_names_import_no_torch(argv, code):
    """`sea --help`, `sea evaluate --help` and a bad judge name answer without importing torch/transformers."""
    prog = (
        f"import sys\nfrom sea_align.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit as e:\n"
        f"    print('exit', e.code)\nprint('heavy', [m for m in {HEAVY!r} if m in sys.modules])"
    )
    r = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, env=ENV, timeout=120)
    assert f"exit {code}" in r.stdout and "heavy []" in r.stdout, r.stdout[-500:] + r.stderr[-500:]


def _parsers(p):
    import argparse

    yield p
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for sp in a.choices.values():
                yield from _parsers(sp)


def test_every_command_and_flag_has_help_with_default():
    import argparse

    from sea_align.cli import build_parser
    from sea_align.cli.args import HelpFormatter

    fmt = HelpFormatter("sea")
    for p in _parsers(build_parser()):  # every plugin loaded
        assert p.description, p.prog
        for a in p._actions:
            if isinstance(a, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
                continue
            assert a.help, (p.prog, a.dest)
            if a.help == argparse.SUPPRESS:  # a research knob: its default is shown by --help-experimental
                continue
            if a.option_strings and a.nargs != 0 and not a.required:
                assert "default" in fmt._get_help_string(a), (p.prog, a.option_strings)


@pytest.mark.parametrize(
    "argv,level",
    [
        (["-v", "report", "d"], "INFO"),
        (["report", "d", "-v"], "INFO"),
        (["--log-level", "debug", "report", "d"], "DEBUG"),
        (["report", "--log-level", "ERROR", "d"], "ERROR"),
        (["report", "d"], "WARNING"),
        (["-v", "bench", "evaluate", "--model", "m", "--out", "o", "--log-level", "debug"], "DEBUG"),
    ],
)
def test_log_level_anywhere(argv, level):
    from sea_align.cli import build_parser, parse

    assert parse(build_parser(), argv).log_level == level


def test_stage_commands_take_config_overrides_and_flags():
    from sea_align.cli import build_parser, parse
    from sea_align.cli.stages import stage_config
    from sea_align.config import SynthesizeConfig

    def cfg(*argv):
        return stage_config(parse(build_parser(), list(argv)))

    base = ("synthesize", "--data", "p.jsonl", "--out", "e")
    assert cfg(*base).synthesize == SynthesizeConfig()  # no --config: the defaults, as before
    c = cfg(*base, "--config", "tiny", "synthesize.max_steps=7", "--lr", "0.2", "synthesize.lr=0.5", "--device", "cpu")
    assert (c.model, c.synthesize.max_steps, c.synthesize.lr, c.device) == ("tiny-random-llava", 7, 0.2, "cpu")
    c = cfg("evaluate", "--out", "o", "evaluate.bench=[a.jsonl]", "evaluate.judge=openai", "--batch-size", "3")
    assert (c.evaluate.bench, c.evaluate.judge, c.evaluate.batch_size) == (["a.jsonl"], "openai", 3)
    c = cfg("evaluate", "--out", "o", "evaluate.bench=[a.jsonl]", "--bench", "b.jsonl", "--bench", "c.jsonl")
    assert c.evaluate.bench == ["b.jsonl", "c.jsonl"]  # the flag wins over the override
    assert cfg("align", "--data", "p", "--out", "a", "--text-only").align.text_only is True
    assert cfg("prepare", "--data", "s.jsonl", "--out", "p", "--limit", "4").prepare.limit == 4


def test_stage_options_are_generated_from_the_config():
    """Each stage command has an option for every entry of its sections (named after the field, with the field's
    help, the config's default and choices), and each option sets its entry; bools take --no-<name> too."""
    import argparse

    from sea_align.cli import build_parser, parse
    from sea_align.cli.args import CFG, show
    from sea_align.cli.stages import OPTIONS, stage_config
    from sea_align.config import config_keys

    subs = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    required = {
        "prepare": ["--out", "o"],
        "synthesize": ["--data", "d", "--out", "o"],
        "run": ["--out", "o", "--config", "tiny"],
        "align": ["--data", "d", "--out", "o"],
        "evaluate": ["--out", "o"],
        "attack": ["--bench", "b", "--out", "o"],
        "export": ["--adapter", "a", "--out", "o"],
    }
    for cmd, keys in OPTIONS.items():
        opts = {a.dest[len(CFG) :]: a for a in subs[cmd]._actions if a.dest.startswith(CFG)}
        sections = {*keys, *(f"{s}.experimental" for s in keys)}
        want = [k for k in config_keys() if k.name in keys or k.name.rsplit(".", 1)[0] in sections]
        assert set(opts) == {k.name for k in want} - {"evaluate.build"}, cmd
        for k in want:
            if k.name not in opts:
                continue
            a = opts[k.name]
            assert a.option_strings[0] == "--" + k.name.rsplit(".", 1)[-1].replace("_", "-")
            if ".experimental." in k.name:  # a research knob: an option, shown by --help-experimental only
                assert a.help == argparse.SUPPRESS, k.name
            else:
                assert a.help.startswith(k.brief.replace("%", "%%")), a.help
                assert cmd == "export" and k.name == "model" or f"(default: {show(k.default)}" in a.help, a.help
            assert a.choices is None or list(a.choices) == k.choices()
            if k.type is bool:
                argv = [cmd, *required[cmd], "--no-" + a.option_strings[0][2:]]
                value = False
            elif k.choices():
                argv, value = [cmd, *required[cmd], a.option_strings[0], k.choices()[-1]], k.choices()[-1]
            elif k.type in (int, float):
                seven = k.type(7) if k.range.holds(7) else k.type((k.range.lo + k.range.hi) / 2)  # in range
                argv, value = [cmd, *required[cmd], a.option_strings[0], str(seven)], seven
            elif k.type == list[float]:
                argv, value = [cmd, *required[cmd], a.option_strings[0], "1.5,0.5,3"], [1.5, 0.5, 3.0]
            elif k.type == list[str]:
                argv, value = [cmd, *required[cmd], a.option_strings[0], "x", a.option_strings[0], "y"], ["x", "y"]
            else:
                judges = {"evaluate.judge": "openai", "attack.judge": "openai"}
                value = {"device": "cpu", **judges}.get(k.name, "some-value")
                argv = [cmd, *required[cmd], a.option_strings[0], value]
            node = stage_config(parse(build_parser(), argv))
            for part in k.name.split("."):
                node = getattr(node, part)
            assert node == value, (cmd, k.name)


def test_each_stage_help_fits_one_screen_and_hides_the_research_knobs(capsys, monkeypatch):
    """`sea <stage> --help` fits 50 lines of 80 columns and shows no research knob; `--help-experimental`
    lists exactly the stage's `experimental` keys, each with its config key and full help."""
    from sea_align.cli import build_parser, parse
    from sea_align.config import config_keys

    monkeypatch.setenv("COLUMNS", "80")
    for cmd in ("prepare", "synthesize", "align", "evaluate", "run"):
        with pytest.raises(SystemExit):
            parse(build_parser(), [cmd, "--help"])
        text = capsys.readouterr().out
        assert len(text.splitlines()) <= 50, (cmd, len(text.splitlines()))
        assert max(map(len, text.splitlines())) <= 80, cmd
        for k in config_keys():
            if ".experimental." in k.name:
                assert "--" + k.name.rsplit(".", 1)[-1].replace("_", "-") + " " not in text, (cmd, k.name)
    for cmd in ("synthesize", "align"):
        with pytest.raises(SystemExit) as e:
            parse(build_parser(), [cmd, "--help-experimental"])
        assert e.value.code == 0
        text = capsys.readouterr().out
        knobs = [k for k in config_keys() if k.name.startswith(f"{cmd}.experimental.")]
        assert knobs and text.count("(config key ") == len(knobs)
        for k in knobs:
            assert f"config key {k.name};" in text and " ".join(k.help.split()[:4]) in " ".join(text.split())


def test_a_research_knob_is_set_by_its_option_and_an_old_key_says_where_it_went(tmp_path):
    from sea_align.cli import build_parser, parse
    from sea_align.cli.stages import stage_config

    args = ["align", "--data", "p", "--out", "a", "--consistency", "1.5", "align.experimental.benign_repeat=2"]
    cfg = stage_config(parse(build_parser(), args))
    assert (cfg.align.experimental.consistency, cfg.align.experimental.benign_repeat) == (1.5, 2)
    with pytest.raises(DataError, match="'align.consistency' moved to align.experimental.consistency"):
        stage_config(parse(build_parser(), ["align", "--data", "p", "--out", "a", "align.consistency=1"]))
    base = ["align", "--data", "p", "--out", "a"]
    (tmp_path / "old.yaml").write_text("align:\n  echo: true\n")
    with pytest.raises(DataError, match="old.yaml: 'align.echo' removed: measured and adopted by no preset"):
        stage_config(parse(build_parser(), [*base, "--config", str(tmp_path / "old.yaml")]))


def test_plugins_come_from_entry_points(monkeypatch, caplog):
    """Plugin commands are the "sea_align.commands" entry points; one whose module is missing is skipped with
    a warning, any other import error is raised."""
    from importlib.metadata import EntryPoint

    from sea_align.cli import command

    eps = [
        EntryPoint("ok-cmd", "test_cli:_fake_add_cli", command.PLUGIN_GROUP),
        EntryPoint("ok-cmd", "test_cli:_fake_add_cli", command.PLUGIN_GROUP),  # found twice: registered once
        EntryPoint("gone", "sea_align_no_such_plugin.cli:add_cli", command.PLUGIN_GROUP),
    ]
    monkeypatch.setattr(command, "entry_points", lambda group: eps if group == command.PLUGIN_GROUP else [])
    assert command.parse(command.build_parser(), ["ok-cmd"]).func(None) == 7
    assert "'gone' not available" in caplog.text
    eps.append(EntryPoint("broken", "test_cli:_missing_name", command.PLUGIN_GROUP))
    with pytest.raises(AttributeError):
        command.build_parser()
    assert not hasattr(command, "PLUGINS") and not hasattr(command, "LAZY_PLUGINS")


def _fake_add_cli(sub):
    sub.add_parser("ok-cmd", help="a plugin's command").set_defaults(func=lambda args: 7)


def test_evaluate_takes_the_modality_from_the_bench(tmp_path, monkeypatch):
    """A video bench loads the model's video form (sea-tiny-vl: LLaVA-NeXT-Video); the load is stubbed here,
    the real run is in docs/cli.md (2.5 min on 2 busy CPU cores)."""
    from conftest import write_jsonl
    from sea_align import models
    from sea_align.cli import main
    from sea_align.stages.evaluate import media_modality

    (tmp_path / "v.mp4").write_bytes(b"not decoded before the model loads")
    bench = write_jsonl(
        tmp_path / "b.jsonl",
        [
            {"id": "1", "prompt": "p", "harmful": True, "media": [{"type": "video", "path": "v.mp4"}]},
            {"id": "2", "prompt": "typed", "harmful": False, "media": []},
        ],
    )
    seen = {}

    def load(spec, **kw):
        seen.update(kw, spec=spec)
        raise models.ModelError("stub: not loading")

    monkeypatch.setattr(models, "load_adapter", load)
    assert main(["evaluate", "--model", "sea-tiny-vl", "--bench", str(bench), "--out", str(tmp_path / "e")]) == 2
    assert seen["spec"] == "sea-tiny-vl" and seen["modality"] == "video"
    assert main(["evaluate", "--bench", str(bench), "--out", str(tmp_path / "e"), "--modality", "image"]) == 2
    assert seen["modality"] == "image"  # the flag wins
    image, video = {"media": [{"type": "image"}]}, {"media": [{"type": "video"}]}
    assert media_modality([image, {"media": []}]) == "image"
    assert media_modality([{"media": []}]) is None and media_modality([image, video]) is None


def test_resumed_run_names_the_line_of_a_broken_prepared_file(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    aux = {"image": [{"prompt": "What does the image show?", "target": "a phrase"}]}
    good = {"id": "r1", "instruction": "Explain how to pick a lock", "response": "I can't help with that."}
    good.update(key_phrase="pick a lock", phrase_type="activity", detoxified="open a door", aux=aux)
    (out / "prepared.jsonl").write_text(json.dumps(good) + "\n" + json.dumps({"id": "r2"}) + "\n")
    r = sea("run", "--config", "tiny", "--out", str(out), "--quiet")
    assert r.returncode != 0
    assert "prepared.jsonl:2" in r.stderr and "Traceback" not in r.stderr
    assert not (out / "embeddings").exists()  # stopped before any stage after prepare
