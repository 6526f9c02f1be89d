"""mrisr-ray: GAN super-resolution for brain MRI (GAN-CPCE, GAN-CIRCLE) with Ray, Optuna, MLflow."""

__version__ = "0.2.0"
