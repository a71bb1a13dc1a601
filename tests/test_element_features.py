"""Tabulated element properties as a network input (``ModelConfig.element_features``)."""

from __future__ import annotations

import numpy as np
import torch
from crystals import laminate_config
from pymatgen.core import Lattice, Structure
from scipy.spatial.transform import Rotation

from anisoscreen import tensor as tm
from anisoscreen.model.nn.elements import ELEMENT_PROPERTIES, element_property_table
from anisoscreen.model.nn.graph import collate, structure_to_graph
from anisoscreen.model.nn.network import AnisoNet


def test_the_table_is_standardised_with_a_zero_row_for_no_element():
    table = element_property_table()
    assert table.shape == (119, len(ELEMENT_PROPERTIES))
    np.testing.assert_array_equal(table[0], 0.0)
    np.testing.assert_allclose(table[1:].mean(axis=0), 0.0, atol=1e-9)
    assert np.all(table[1:].std(axis=0) <= 1.0 + 1e-9)
    x = table[:, ELEMENT_PROPERTIES.index("X")]
    assert x[9] > x[8] > x[17] > x[11]  # F > O > Cl > Na


def predict(net: AnisoNet, structure: Structure) -> np.ndarray:
    with torch.no_grad():
        graph = collate([structure_to_graph(structure, allow_isolated=True)], torch.float64)
        return net.predict_tensor(graph)[0].numpy()


def test_the_properties_reach_the_output_and_it_stays_equivariant(triclinic):
    torch.manual_seed(0)
    net = AnisoNet(laminate_config(element_features=True)).double().eval()
    reference = predict(net, triclinic)
    rotation = Rotation.random(random_state=1).as_matrix()
    rotated = Structure(
        Lattice(triclinic.lattice.matrix @ rotation.T), triclinic.species, triclinic.frac_coords
    )
    np.testing.assert_allclose(
        predict(net, rotated), tm.rotate(reference, rotation), atol=1e-9 * abs(reference).max()
    )
    assert net.element_table is not None
    net.element_table[triclinic.atomic_numbers[0]] += 1.0  # another element's properties
    assert not np.allclose(predict(net, triclinic), reference)


def test_without_them_the_network_has_no_table():
    net = AnisoNet(laminate_config())
    assert net.element_table is None
    assert not hasattr(net, "element_embedding")
