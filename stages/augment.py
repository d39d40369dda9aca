"""Stage augment: the training pool of originals and variants (reads params: augment)."""
from fashionclf import params
from fashionclf.augment import augment, plot_samples
from fashionclf.cli import stage_main


def main():
    p = params.load("augment")
    table, images = augment(p, "data/balance/trainval", "data/augment")
    plot_samples(images, table, p, "plots/augment_samples.png")
    print(f"augment: {len(table)} images from {table['group'].nunique()} sources")


if __name__ == "__main__":
    stage_main(main)
