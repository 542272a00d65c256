# The torchtest server: started once per interpreter per test binary as
# `python -u -c <this file>`, it imports torch (and numpy) once and then
# runs scripts the Go side sends, each as if it were `python SCRIPT ARGS...`
# or `python -c CODE ARGS...` in a process of its own.
#
# Protocol (both directions: a 4-byte big-endian length, then that many
# bytes of JSON). The server first sends {"ready": true, "torch": version
# or null, "python": version}. Each request is {"args": [...], "cwd": dir,
# "stdin": path, "stdout": path, "stderr": path}: args as after the
# interpreter on a command line (a script path, or "-c" and code, then
# argv); the three paths are files the Go side created. The server runs
# the script with file descriptors 0, 1 and 2 on those files, and answers
# {"status": exit status, "reusable": false when the server must end};
# an "env" list ("K=V") in a request replaces
# the environment for that script. End of input ends the server, and so
# does its parent's end (a test binary killed while a script runs).
#
# Each script runs in a fresh __main__ module with sys.argv, sys.path[0],
# the working directory, the environment, sys.stdin/stdout/stderr,
# warnings filters and registries, torch's RNG state, default dtype, grad
# mode and print options as a new process would have them, and afterwards
# the server undoes what the script did to the process: modules it
# imported from outside the interpreter's library directories (a test's
# own modules, stand-ins put into sys.modules) are dropped, sys.modules
# entries it replaced or removed are restored, and functions and classes
# it replaced on torch's and numpy's main modules are put back.

import builtins
import gc
import importlib
import io
import json
import os
import random
import struct
import sys
import threading
import time
import traceback
import types
import warnings
import weakref

_proto_in = os.fdopen(os.dup(0), "rb", buffering=0)
_proto_out = os.fdopen(os.dup(1), "wb", buffering=0)
_server_err = os.dup(2)
_devnull = os.open(os.devnull, os.O_RDWR)
os.dup2(_devnull, 0)
os.dup2(_server_err, 1)  # at start-up and between requests, stray output goes to the server's stderr

try:
    import torch
    TORCH, TORCH_ERROR = torch.__version__, None
except BaseException:  # noqa: B036 - report any import failure to the Go side
    torch, TORCH, TORCH_ERROR = None, None, traceback.format_exc()
try:
    import numpy
except BaseException:  # noqa: B036
    numpy = None



def _send(obj):
    b = json.dumps(obj).encode()
    _proto_out.write(struct.pack(">I", len(b)) + b)


def _read_exact(n):
    buf = b""
    while len(buf) < n:
        chunk = _proto_in.read(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def _recv():
    head = _read_exact(4)
    if head is None:
        return None
    body = _read_exact(struct.unpack(">I", head)[0])
    if body is None:
        return None
    return json.loads(body)


def _library_roots():
    roots = []
    for p in sys.path:
        if p and os.path.isabs(p) and os.path.isdir(p):
            roots.append(os.path.join(os.path.realpath(p), ""))
        elif p and os.path.isabs(p) and os.path.isfile(p):  # a zip of the stdlib
            roots.append(os.path.realpath(p))
    return tuple(roots)


_ROOTS = _library_roots()
_BASE_PATH = list(sys.path[1:])
_BASE_ENV = dict(os.environ)
_BASE_FILTERS = list(warnings.filters)
_BASE_RANDOM = random.getstate()
_PROTECTED = [m for m in (builtins, warnings, torch, getattr(torch, "Tensor", None), getattr(torch, "nn", None),
                          getattr(torch, "serialization", None), getattr(getattr(torch, "nn", None), "functional", None),
                          numpy)
              if isinstance(m, (types.ModuleType, type))]  # what a script must leave as it found it
_PROTECTED_DICTS = [dict(vars(m)) for m in _PROTECTED]


def _settings():
    """Returns (restore, saved value) for each global setting of torch and
    numpy a script may change: those the interpreter's versions have."""
    pairs = []

    def add(get, restore):
        try:
            pairs.append((restore, get()))
        except Exception:  # noqa: BLE001 - a version (or stand-in) without it
            pass

    if torch is not None:
        add(lambda: torch.random.get_rng_state(), lambda v: torch.random.set_rng_state(v))
        add(lambda: torch.get_default_dtype(), lambda v: torch.set_default_dtype(v))
        add(lambda: torch.is_grad_enabled(), lambda v: torch.set_grad_enabled(v))
        add(lambda: torch.get_num_threads(), lambda v: torch.set_num_threads(v))
        opts = getattr(getattr(torch, "_tensor_str", None), "PRINT_OPTS", None)
        add(lambda: dict(vars(opts)), lambda v: (vars(opts).clear(), vars(opts).update(v)))
    if numpy is not None:
        add(lambda: numpy.get_printoptions(), lambda v: numpy.set_printoptions(**v))
        add(lambda: numpy.geterr(), lambda v: numpy.seterr(**v))
    return pairs


_SETTINGS = _settings()


def _is_library(mod):
    f = getattr(mod, "__file__", None)
    if not f:
        return False
    try:
        f = os.path.realpath(f)
    except (TypeError, ValueError):
        return False
    return f.startswith(_ROOTS)


def _reset_state():
    """Gives the next script what a new process would have."""
    importlib.invalidate_caches()
    warnings.filters[:] = _BASE_FILTERS
    mutated = getattr(warnings, "_filters_mutated", None) or getattr(warnings, "_filters_mutated_lock_held", None)
    if mutated is not None:
        mutated()  # forget which warnings were already shown
    random.setstate(_BASE_RANDOM)
    for restore, value in _SETTINGS:
        restore(value)


def _undo(modules_before):
    """Undoes what a script did to the modules of the process; returns
    False when it changed what the server cannot tell from a library's own
    doing (a function of torch replaced: by the script, or by a torch
    module it imported?), so that the server must not run another script."""
    for name in list(sys.modules):
        if name not in modules_before and not _is_library(sys.modules[name]):
            del sys.modules[name]
    for name, mod in modules_before.items():
        if sys.modules.get(name) is not mod:
            sys.modules[name] = mod
    os.environ.clear()
    os.environ.update(_BASE_ENV)
    return all(_unchanged(obj, base) for obj, base in zip(_PROTECTED, _PROTECTED_DICTS))


def _unchanged(obj, base):
    """Reports whether the functions and classes among obj's attributes
    are those of base (its attributes at start-up). Other values may
    change as a library works (a module's counters, the __slotnames__
    that pickling caches on torch.Tensor)."""
    d = vars(obj)

    def counts(v):
        return callable(v) and not isinstance(v, types.ModuleType)

    for k, v in base.items():
        now = d.get(k, _unchanged)
        if now is not v and (counts(v) or counts(now)):
            return False
    return all(k in base or not counts(v) for k, v in d.items())


_real_open = io.open
_opened = []  # weak references to the files the running script opened


def _tracking_open(*args, **kwargs):
    """io.open, noting the file so that it is flushed when the script
    ends even if the script leaves it open in a reference cycle (a new
    process flushes such files when it exits)."""
    f = _real_open(*args, **kwargs)
    try:
        _opened.append(weakref.ref(f))
    except TypeError:
        pass
    return f


def _flush_opened():
    for ref in _opened:
        f = ref()
        if f is not None:
            try:
                if not f.closed:
                    f.flush()
            except Exception:  # noqa: BLE001 - as at exit, errors are ignored
                pass
    _opened.clear()


def _exit_status(e):
    code = e.code
    if code is None:
        return 0
    if isinstance(code, bool) or not isinstance(code, int):
        print(code, file=sys.stderr)
        return 1
    return code & 0xFF


def _run(req):
    args = req["args"]
    if args[0] == "-c":
        source, filename, argv, path0 = args[1], "<string>", ["-c"] + args[2:], ""
    else:
        filename = args[0]
        with open(os.path.join(req["cwd"], filename), "rb") as f:
            source = f.read()
        argv = list(args)
        path0 = os.path.dirname(os.path.realpath(os.path.join(req["cwd"], filename)))
    main = types.ModuleType("__main__")
    main.__dict__.update({"__builtins__": builtins, "__file__": filename, "__cached__": None})
    if filename == "<string>":
        del main.__file__
    saved_main = sys.modules["__main__"]
    sys.modules["__main__"] = main
    builtins.open = io.open = _tracking_open
    sys.argv = argv
    sys.path[:] = [path0] + _BASE_PATH
    os.chdir(req["cwd"])
    try:
        code = compile(source, filename, "exec", dont_inherit=True)
        exec(code, main.__dict__)
        status = 0
    except SystemExit as e:
        status = _exit_status(e)
    except BaseException as e:  # noqa: B036 - as python does for an uncaught exception
        tb = e.__traceback__
        if tb is not None and tb.tb_frame.f_code is _run.__code__:
            tb = tb.tb_next  # the frame of this function
        traceback.print_exception(type(e), e, tb)
        status = 1
        del e, tb
    finally:
        sys.modules["__main__"] = saved_main
        builtins.open = io.open = _real_open
        _flush_opened()
    main.__dict__.clear()
    return status


def _watch_parent():
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(1)


def _serve():
    threading.Thread(target=_watch_parent, daemon=True).start()
    _send({"ready": True, "torch": TORCH, "torch_error": TORCH_ERROR, "python": sys.version.split()[0]})
    std = (sys.stdin, sys.stdout, sys.stderr)
    home = os.getcwd()
    while True:
        req = _recv()
        if req is None:
            break
        modules_before = dict(sys.modules)
        _reset_state()
        if req.get("env") is not None:
            os.environ.clear()
            os.environ.update(kv.split("=", 1) for kv in req["env"] if "=" in kv)
        fds = []
        for i, key in enumerate(("stdin", "stdout", "stderr")):
            fd = os.open(req[key], os.O_RDONLY if i == 0 else os.O_WRONLY | os.O_APPEND)
            os.dup2(fd, i)
            os.close(fd)
        sys.stdin = open(0, "r", closefd=False, encoding=std[0].encoding, errors=std[0].errors)
        # New streams on fds 1 and 2, unbuffered as -u makes them: what a
        # script does to them (close, reconfigure) stays with it.
        sys.stdout, sys.stderr = (io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), encoding=f.encoding,
                                                   errors=f.errors, write_through=True) for fd, f in ((1, std[1]), (2, std[2])))
        try:
            status = _run(req)
        finally:
            for f in (sys.stdout, sys.stderr, std[1], std[2]):
                try:
                    f.flush()
                except Exception:  # noqa: BLE001 - a script may have closed or replaced them
                    pass
            sys.stdin, sys.stdout, sys.stderr = std
            sys.argv = [""]
            sys.path[:] = [""] + _BASE_PATH
            os.chdir(home)
            _reset_state()  # first: torch's settings may rebind its attributes (torch.Storage)
            reusable = _undo(modules_before)
            del modules_before
            gc.collect()  # close files the script left open (flushing them)
            os.dup2(_devnull, 0)
            os.dup2(_server_err, 1)
            os.dup2(_server_err, 2)
        sys.stdout.flush()
        _send({"status": status, "reusable": reusable})
    sys.stdout.flush()
    os._exit(0)


_serve()
