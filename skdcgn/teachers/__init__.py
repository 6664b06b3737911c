"""Teachers: deterministic black boxes (z, y) -> image per mechanism. `registry.make_teacher` builds one by kind,
importing only that kind's module; `base.Teacher` is the interface every kind implements."""
