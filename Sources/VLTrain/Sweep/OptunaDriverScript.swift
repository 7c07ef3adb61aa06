/// The Python side of `OptunaDriver`: one process per sweep launch, reading one JSON request per line on
/// standard input and writing one JSON reply per line (importing Optuna and opening the storage once,
/// not per operation, which costs seconds). Everything about the search (samplers, pruners, storage,
/// the study's records) is Optuna's own; this script only translates.
///
/// It is compiled into `vlseg` rather than shipped as a resource file, so a `vlseg` binary copied to a
/// cluster alone still drives sweeps; each launch writes it to `<sweep dir>/.vlseg/optuna_driver.py`,
/// where the version that ran stays readable next to the study.
enum OptunaDriverScript {
    static let source = #"""
        # Written by vlseg sweep (OptunaDriverScript.swift): Optuna operations, one JSON line in, one JSON line out.
        import json
        import math
        import sys
        import warnings


        def reply(obj):
            sys.stdout.write(json.dumps(obj) + "\n")
            sys.stdout.flush()


        STORAGES = {}


        def storage_of(optuna, url):
            # One storage (one connection pool, one schema check) for the whole launch.
            if url in STORAGES:
                return STORAGES[url]
            kwargs = {}
            if url.startswith("sqlite"):
                # Several launches may share one SQLite study: wait for the file lock instead of failing.
                kwargs["connect_args"] = {"timeout": 120}
            elif url.startswith("postgresql"):
                kwargs["pool_pre_ping"] = True
                kwargs["connect_args"] = {"connect_timeout": 30}
            STORAGES[url] = optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
            return STORAGES[url]


        def sampler_of(optuna, spec, salt):
            # A sampler per ask, seeded with the seed plus the trials so far: the same study history gives
            # the same sample whichever launch asks, and a launch started again does not replay its draws.
            s = spec or {}
            seed = s.get("seed")
            return optuna.samplers.TPESampler(
                seed=None if seed is None else int(seed) + int(salt),
                multivariate=bool(s.get("multivariate", True)),
                n_startup_trials=int(s.get("n_startup_trials", 10)),
                warn_independent_sampling=False,
            )


        def pruner_of(optuna, spec):
            s = spec or {}
            if s.get("kind", "none") == "median":
                return optuna.pruners.MedianPruner(
                    n_startup_trials=int(s.get("n_startup_trials", 2)), n_warmup_steps=int(s.get("n_warmup_steps", 0))
                )
            return optuna.pruners.NopPruner()


        def distribution_of(optuna, d):
            D = optuna.distributions
            if d["type"] == "float":
                return D.FloatDistribution(d["low"], d["high"], log=bool(d.get("log")), step=d.get("step"))
            if d["type"] == "int":
                return D.IntDistribution(int(d["low"]), int(d["high"]), log=bool(d.get("log")), step=int(d.get("step", 1)))
            return D.CategoricalDistribution(d["choices"])


        def finite(x):
            return x if isinstance(x, (int, float)) and math.isfinite(x) else None


        def trial_record(t):
            seconds = None
            if t.datetime_start is not None and t.datetime_complete is not None:
                seconds = (t.datetime_complete - t.datetime_start).total_seconds()
            return {
                "number": t.number,
                "state": t.state.name,
                "value": finite(t.value) if t.values is not None and len(t.values) == 1 else None,
                "params": t.params,
                "user_attrs": t.user_attrs,
                "seconds": seconds,
                "intermediate": {str(k): finite(v) for k, v in t.intermediate_values.items()},
            }


        def study_of(optuna, req, sampler=None, pruner=None):
            return optuna.load_study(
                study_name=req["study"], storage=storage_of(optuna, req["storage"]), sampler=sampler, pruner=pruner
            )


        class AskLock:
            """Serialises counting and asking between every launch sharing the storage, so together they
            stop at the trial count: a lock file beside an SQLite database, an advisory lock in PostgreSQL."""

            def __init__(self, url, study):
                # study "" locks the storage's set-up (its tables) rather than one study.
                self.url, self.study, self.file, self.conn = url, study, None, None

            def __enter__(self):
                if self.url.startswith("sqlite:///"):
                    import fcntl

                    self.file = open(self.url[len("sqlite:///"):] + ".vlseg-ask.lock", "a")
                    fcntl.lockf(self.file, fcntl.LOCK_EX)
                elif self.url.startswith("postgresql"):
                    import sqlalchemy
                    import zlib

                    engine = sqlalchemy.create_engine(self.url, poolclass=sqlalchemy.pool.NullPool)
                    self.conn = engine.connect()
                    self.key = zlib.crc32(("vlseg-sweep:" + self.study).encode())
                    self.conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": self.key})
                return self

            def __exit__(self, *exc):
                if self.file is not None:
                    self.file.close()
                if self.conn is not None:
                    import sqlalchemy

                    self.conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
                    self.conn.close()
                return False


        def op_open(optuna, req):
            # Launches starting together would race to create Optuna's tables and the study: one at a time.
            with AskLock(req["storage"], ""):
                storage = storage_of(optuna, req["storage"])
                study = optuna.create_study(
                    study_name=req["study"], storage=storage, direction=req["direction"], load_if_exists=True
                )
            wanted = req["direction"].upper()
            if study.direction.name != wanted:
                return {"mismatch": "study %s in this storage %ss, this sweep %ss" % (
                    req["study"], study.direction.name.lower(), wanted.lower())}
            metric = study.user_attrs.get("vlseg_metric")
            if metric is None:
                study.set_user_attr("vlseg_metric", req["metric"])
            elif metric != req["metric"]:
                return {"mismatch": "study %s in this storage optimises %s, this sweep %s" % (
                    req["study"], metric, req["metric"])}
            return {"trials": [trial_record(t) for t in study.get_trials(deepcopy=False)]}


        def op_list(optuna, req):
            return {"trials": [trial_record(t) for t in study_of(optuna, req).get_trials(deepcopy=False)]}


        def op_ask(optuna, req):
            with AskLock(req["storage"], req["study"]):
                existing = study_of(optuna, req).get_trials(deepcopy=False)
                if len(existing) >= int(req["target"]):
                    return {"trial": None, "count": len(existing)}
                study = study_of(optuna, req, sampler=sampler_of(optuna, req.get("sampler"), len(existing)))
                # Sorted: the sampler draws in this order, so the same seed gives the same trial.
                space = {k: distribution_of(optuna, req["space"][k]) for k in sorted(req["space"])}
                trial = study.ask(space)
                for k, v in (req.get("attrs") or {}).items():
                    trial.set_user_attr(k, v)
                return {"trial": {"number": trial.number, "params": trial.params}, "count": len(existing) + 1}


        def frozen(study, number):
            for t in study.get_trials(deepcopy=False):
                if t.number == number:
                    return t
            raise KeyError("study %s has no trial %d" % (study.study_name, number))


        def trial_id(study, number):
            # Optuna's Trial takes the storage's id; FrozenTrial keeps it in _trial_id.
            return frozen(study, number)._trial_id


        def op_tell(optuna, req):
            study = study_of(optuna, req)
            number = int(req["number"])
            from optuna.trial import TrialState

            done = frozen(study, number).state
            if done.is_finished():
                # Told already (by a launch that ended before it could say so): the record stands.
                return {"already": done.name}
            if req.get("error"):
                optuna.trial.Trial(study, trial_id(study, number)).set_user_attr("error", req["error"])
            state = {"complete": TrialState.COMPLETE, "fail": TrialState.FAIL, "pruned": TrialState.PRUNED}[req["state"]]
            value = req.get("value") if state == TrialState.COMPLETE else None
            study.tell(number, value, state=state, skip_if_finished=True)
            return {}


        def op_report(optuna, req):
            study = study_of(optuna, req, pruner=pruner_of(optuna, req.get("pruner")))
            trial = optuna.trial.Trial(study, trial_id(study, int(req["number"])))
            trial.report(float(req["value"]), int(req["step"]))
            return {"should_prune": bool(trial.should_prune())}


        OPS = {"open": op_open, "list": op_list, "ask": op_ask, "tell": op_tell, "report": op_report}


        def main():
            # One request per line, one reply per line, until standard input closes (the sweep ended).
            try:
                import optuna
            except ImportError as e:
                optuna, missing = None, str(e)
            if optuna is not None:
                warnings.simplefilter("ignore")
                optuna.logging.set_verbosity(optuna.logging.ERROR)
                try:
                    import sqlalchemy.exc as sa_exc

                    storage_errors = (sa_exc.SQLAlchemyError, optuna.exceptions.StorageInternalError)
                except ImportError:
                    storage_errors = (optuna.exceptions.StorageInternalError,)
            for line in sys.stdin:
                if not line.strip():
                    continue
                req = json.loads(line)
                if optuna is None:
                    reply({"ok": False, "kind": "optuna_missing", "message": missing})
                    continue
                try:
                    out = OPS[req["op"]](optuna, req)
                except storage_errors as e:
                    first = str(e).splitlines()[0] if str(e) else ""
                    reply({"ok": False, "kind": "storage", "message": "%s: %s" % (type(e).__name__, first)})
                    continue
                except Exception as e:
                    reply({"ok": False, "kind": "error", "message": "%s: %s" % (type(e).__name__, e)})
                    continue
                out["ok"] = True
                reply(out)


        main()
        """#
}
