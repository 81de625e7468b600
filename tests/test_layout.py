"""The package's shape holds: no import circle, the configuration is a leaf, files stay readable."""
import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "duiit_fast"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict:
    """module → the package modules it imports, at module level or inside functions."""
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    known = set(files) | {"duiit_fast._C", "duiit_fast.kernels"}   # the extension, the shipped kernels
    graph = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                target = f"{base}.{node.module}" if node.module else base
                subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known]
                deps.update(subs if len(subs) == len(node.names) else [target, *subs])
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                deps.update(n for n in names if n.startswith("duiit_fast"))
        graph[name] = {d for d in (_known_prefix(d, known) for d in deps) if d and d != name}
    return graph


def _known_prefix(name: str, known: set) -> str:
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name


def test_no_import_circle():
    graph = import_graph()
    state = {}

    def visit(node, path):
        state[node] = "open"
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == "open":
                raise AssertionError("import circle: " + " -> ".join(path[path.index(dep):] + [dep]))
            if dep not in state:
                visit(dep, path + [dep])
        state[node] = "done"
    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_reading_a_configuration_registers_no_op_and_builds_no_network():
    code = ("import sys, duiit_fast.config as c; c.TrainConfig().validate(check_paths=False); "
            "print(sorted(m for m in sys.modules if m.startswith(('duiit_fast.ops', 'duiit_fast.models', 'torch'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


def test_no_module_over_400_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long


def test_the_trainer_is_a_loop_of_at_most_300_lines():
    assert len((PACKAGE / "train" / "trainer.py").read_text().splitlines()) <= 300


# What a method declares (train/methods/base.py) and what names a setting: a conditional that reads
# one of these outside train/methods/ and the experiment's arm table (arms.py) branches on the setting.
SETTING_FLAGS = {"translators", "samples_sources", "loads_sources", "renders_sources_as_ct", "native_extra_sets",
                 "cues_every_epoch", "trains_jointly", "uses_readers", "kind", "setting", "translator_sources",
                 "sampled_sources", "loaded_sources", "sources_rendered_as_ct"}
SETTING_WORDS = {"PURE", "MIX", "ORACLE", "NAIVE", "CYCLEGAN", "TL", "MTL", "DANN", "AUG"}


def setting_branches() -> list[str]:
    """file:line of every conditional (if, a ternary, a comprehension's if, and/or) whose test reads
    a method's declaration or the setting's kind or name, outside train/methods/ and arms.py."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        if rel.parts[:2] == ("train", "methods") or rel == Path("arms.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            tests = [node.test] if isinstance(node, (ast.If, ast.IfExp, ast.While)) else \
                list(node.ifs) if isinstance(node, ast.comprehension) else \
                [node] if isinstance(node, ast.BoolOp) else []
            for test in tests:
                for sub in ast.walk(test):
                    is_dtype_kind = isinstance(sub, ast.Attribute) and sub.attr == "kind" and \
                        isinstance(sub.value, ast.Attribute) and sub.value.attr == "dtype"   # numpy's, not a setting
                    if (isinstance(sub, ast.Attribute) and sub.attr in SETTING_FLAGS and not is_dtype_kind) or (
                            isinstance(sub, ast.Constant) and isinstance(sub.value, str)
                            and sub.value.split("-")[0] in SETTING_WORDS):
                        found.add(f"{rel}:{test.lineno}")
    return sorted(found)


def test_at_most_five_setting_branches_outside_the_methods():
    assert len(setting_branches()) <= 5, setting_branches()
