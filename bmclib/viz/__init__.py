"""Pictures of hands: static matplotlib figures (:mod:`.static`), plotly 3D figures
(:mod:`.plotly3d`) and the interactive JupyterLab tools (:mod:`.inspector`).

matplotlib is a core dependency; plotly and ipywidgets come with the ``notebooks`` extra
and are imported only by the modules that need them.
"""
FINGER_COLORS = ("#e6550d", "#3182bd", "#31a354", "#756bb1", "#d6616b")  # thumb -> little
