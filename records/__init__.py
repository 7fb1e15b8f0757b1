"""What one package writes to disk and another reads back, declared once: the run folder (written by
``algorithms.common.results``, read by ``analysis`` and ``launch``) and the reference values (computed by
``algorithms.references``, drawn by ``analysis``), and how every entry point answers bad input
(``records.command_line``).

It imports nothing of the project, so every package may import it.
"""
