"""How good a student is: fidelity metrics against the teacher (a registry), convergence, the class-mean baseline."""
